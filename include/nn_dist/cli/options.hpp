// How every nn_dist program reads its command line: Boost.Program_options
// against the program's option table, one --help layout, every word belonging
// to an option, and each error one line naming the flag (exit code 2).
#pragma once

#include <boost/program_options.hpp>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

// What --help says about a program besides its option table.
struct ProgramHelp {
  std::string name;                // "nn_eval"
  std::string summary;             // what it does, one line
  std::vector<std::string> usage;  // the usage lines, without "Usage: "
  // Added to the error for a stray word, e.g. " (write lists with commas, e.g. --hidden 64,32)".
  std::string stray_hint = "";
};

// "<name>: <summary>\n\nUsage: <usage lines>\n<table>", the table with its defaults.
std::string help_text(const ProgramHelp& program, const boost::program_options::options_description& table);

// An option table with -h/--help first, captioned "Options".
boost::program_options::options_description option_table();

// Parses argv against table into the variables the table points to. Returns
// false for -h/--help (then *help holds help_text and nothing was stored).
// Throws Error naming the flag at fault, or the word that belongs to no option.
bool parse_options(int argc, const char* const* argv, const ProgramHelp& program,
                   const boost::program_options::options_description& table, std::string* help);

// The steps of parse_options, for nn_dist's own parser (it adds a --config
// file between storing and notifying): the command line's options, with an
// Error for a word that belongs to no option and for Boost's errors.
boost::program_options::parsed_options parse_command_line(int argc, const char* const* argv, const ProgramHelp& program,
                                                          const boost::program_options::options_description& table);

// Runs f() and turns Boost's errors (a bad value, an unknown or repeated
// option) into an Error carrying Boost's message, which names the option.
template <typename F>
auto with_option_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const boost::program_options::error& e) {
    throw Error(printable(e.what(), 200));
  }
}

// The error line every program prints: "<name>: error: <message>".
inline void print_error(const std::string& name, const std::string& message) {
  std::fprintf(stderr, "%s: error: %s\n", name.c_str(), printable(message, 1000).c_str());
}

// main() of a program without MPI: body() returns the exit code; an exception
// becomes one error line and kUsageExitCode.
template <typename Body>
int program_main(const std::string& name, Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    print_error(name, e.what());
    return kUsageExitCode;
  }
}

// "--flag: unknown value 'text' (expected on or off)" unless text is on or off.
bool parse_on_off(const std::string& text, const std::string& flag);

}  // namespace nn_dist
