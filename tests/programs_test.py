#!/usr/bin/env python3
"""The command-line conventions all seven programs share (src/cli/options.cpp): --help and -h print the same
text, which opens with "<name>: <what it does>", then "Usage: " and the option table with -h/--help, and exit 0;
an unknown option, a missing value, a value that is not a number and a stray word each end the program with one
line "<name>: error: ..." naming the flag or word, nothing on stdout, and exit code 2.

Usage: programs_test.py BUILD_DIR"""
import os
import subprocess
import sys
import tempfile

from testkit import check, finish

BUILD = os.path.abspath(sys.argv[1])
WORK = tempfile.TemporaryDirectory(prefix="nn_programs_test.")  # where a program that misreads its flags writes

# program, the words before its options, an option that takes a number (None: none does), one that takes a value.
PROGRAMS = [
    ("nn_dist", [], "--epochs", "--hidden"),
    ("nn_eval", [], "--batch", "--model"),
    ("nn_convert", ["csv"], "--chunk-rows", "--input"),
    ("nn_convert", ["idx"], None, "--images"),
    ("nn_datagen", [], "--samples", "--out"),
    ("nn_roofline", [], "--repeats", "--hidden"),
    ("nn_corelat", [], None, "--cpus"),
    ("nn_allreduce_bench", [], "--factor", "--paths"),
]


def run(program, args):
    p = subprocess.run([os.path.join(BUILD, program)] + args, capture_output=True, text=True, timeout=60,
                       cwd=WORK.name)
    return p.returncode, p.stdout, p.stderr


def expect_error(program, args, words):
    """One error line naming every word, nothing on stdout, exit 2."""
    code, out, err = run(program, args)
    lines = err.splitlines()
    name = " ".join([program] + args)
    check(f"{name}: exit 2, one line '{program}: error: ...' naming {words}",
          code == 2 and out == "" and len(lines) == 1 and lines[0].startswith(f"{program}: error: ")
          and all(w in lines[0] for w in words), f"exit {code}, stdout {out[:200]!r}, stderr {err[-500:]!r}")


for program, before, number_flag, value_flag in PROGRAMS:
    title = " ".join([program] + before)
    code, out, err = run(program, before + ["--help"])
    check(f"{title} --help: exit 0, '{title}: ' first, then 'Usage: ' and the option table",
          code == 0 and err == "" and out.startswith(f"{title}: ") and "\n\nUsage: " in out
          and "-h [ --help ]" in out and value_flag + " " in out, f"exit {code}\n{out}{err}")
    check(f"{title} -h prints what --help prints", run(program, before + ["-h"]) == (code, out, err))
    expect_error(program, before + ["--no-such-flag"], ["unrecognised option '--no-such-flag'"])
    expect_error(program, before + [value_flag], [f"the required argument for option '{value_flag}' is missing"])
    expect_error(program, before + [value_flag, "v", "stray"],
                 [f"unexpected argument 'stray' after {value_flag}: every option takes one value"])
    if number_flag:
        expect_error(program, before + [number_flag, "x"], [f"the argument ('x') for option '{number_flag}' is invalid"])

code, out, err = run("nn_convert", ["--help"])
check("nn_convert --help: both formats' usage, exit 0",
      code == 0 and out.startswith("nn_convert: ") and "Usage: nn_convert csv" in out and "       nn_convert idx" in out,
      out + err)
expect_error("nn_convert", [], ["give a format: csv or idx"])
expect_error("nn_convert", ["xls"], ["unknown format 'xls' (expected csv or idx)"])
finish()
