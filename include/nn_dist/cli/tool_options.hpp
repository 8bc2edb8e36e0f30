// Command-line parsing shared by the small tools (nn_eval, nn_convert): every
// word must belong to an option, and Boost's errors become nn_dist Errors.
#pragma once

#include <boost/program_options.hpp>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

// Parses argv against desc into the variables desc points to; throws Error
// naming the flag or stray word at fault.
inline boost::program_options::variables_map parse_tool_options(int argc, const char* const* argv,
                                                                const boost::program_options::options_description& desc) {
  namespace po = boost::program_options;
  po::variables_map vm;
  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv).options(desc).run();
    for (const po::option& opt : parsed.options) {
      if (opt.position_key >= 0) {
        throw Error("unexpected argument '" + printable(opt.original_tokens.front()) + "' (options take one value)");
      }
    }
    po::store(parsed, vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(printable(e.what(), 200));
  }
  return vm;
}

}  // namespace nn_dist
