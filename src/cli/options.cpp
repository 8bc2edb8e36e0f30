// The command-line conventions every nn_dist program shares: the --help
// layout, stray words refused with the option they follow, Boost's errors
// as nn_dist Errors.
#include "nn_dist/cli/options.hpp"

#include <sstream>

#include "nn_dist/common/name_table.hpp"

namespace po = boost::program_options;

namespace nn_dist {

namespace {

// Command-line words that belong to no option, e.g. the 32 of "--hidden 64 32".
void reject_stray_arguments(const po::parsed_options& parsed, const ProgramHelp& program) {
  std::string previous;
  for (const po::option& o : parsed.options) {
    if (o.position_key < 0 && !o.string_key.empty()) {
      previous = o.original_tokens.empty() ? "" : o.original_tokens.front();
      continue;
    }
    const std::string word = o.original_tokens.empty() ? "" : printable(o.original_tokens.front());
    std::string message = "unexpected argument '" + word + "'";
    if (!previous.empty()) message += " after " + printable(previous);
    throw Error(message + ": every option takes one value" + program.stray_hint);
  }
}

}  // namespace

std::string help_text(const ProgramHelp& program, const po::options_description& table) {
  std::ostringstream s;
  s << program.name << ": " << program.summary << "\n\n";
  for (std::size_t i = 0; i < program.usage.size(); ++i) s << (i == 0 ? "Usage: " : "       ") << program.usage[i] << "\n";
  std::ostringstream options;
  options << table;
  // A table of groups starts each with a blank line; a single table does not.
  if (options.str().rfind("\n", 0) != 0) s << "\n";
  s << options.str();
  return s.str();
}

po::options_description option_table() {
  po::options_description table("Options", 100);
  table.add_options()("help,h", "show this help");
  return table;
}

po::parsed_options parse_command_line(int argc, const char* const* argv, const ProgramHelp& program,
                                      const po::options_description& table) {
  po::parsed_options parsed =
      with_option_errors([&] { return po::command_line_parser(argc, argv).options(table).run(); });
  reject_stray_arguments(parsed, program);
  return parsed;
}

bool parse_options(int argc, const char* const* argv, const ProgramHelp& program, const po::options_description& table,
                   std::string* help) {
  const po::parsed_options parsed = parse_command_line(argc, argv, program, table);
  po::variables_map vm;
  with_option_errors([&] { po::store(parsed, vm); });
  if (vm.count("help")) {
    *help = help_text(program, table);
    return false;
  }
  with_option_errors([&] { po::notify(vm); });
  return true;
}

bool parse_on_off(const std::string& text, const std::string& flag) {
  return NameTable<bool>(flag, {{true, "on"}, {false, "off"}}).parse(text);
}

}  // namespace nn_dist
