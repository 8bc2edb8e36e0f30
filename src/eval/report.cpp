// The reports nn_eval prints: per-class precision, recall, F1 and the
// confusion matrix, or MSE, MAE and R^2; the text layout and the JSON keys are
// what scripts read, so both stay as they are.
#include "nn_dist/eval/report.hpp"

#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace nn_dist {

namespace {

// printf onto the end of *out, whatever the length (a data path may be long).
void appendf(std::string* out, const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  const std::size_t at = out->size();
  out->resize(at + static_cast<std::size_t>(n) + 1);
  std::vsnprintf(out->data() + at, static_cast<std::size_t>(n) + 1, format, again);
  va_end(again);
  out->resize(at + static_cast<std::size_t>(n));
}

std::string formatted(const char* format, double v) {
  std::string s;
  appendf(&s, format, v);
  return s;
}

struct Macro {
  double precision = 0, recall = 0, f1 = 0;
};

Macro macro_average(const std::vector<ClassMetrics>& per, long classes) {
  Macro m;
  for (const ClassMetrics& c : per) {
    m.precision += c.precision / classes;
    m.recall += c.recall / classes;
    m.f1 += c.f1 / classes;
  }
  return m;
}

std::string classification_json(const ReportHeader& h, double loss, double accuracy,
                                const std::vector<double>& confusion, const std::vector<ClassMetrics>& per,
                                const Macro& macro, long classes) {
  std::string s = "{\"samples\":" + json_number(h.samples) + ",\"model\":" + json_string(h.model) +
                  ",\"task\":\"classification\",\"loss\":" + json_number(loss) + ",\"accuracy\":" +
                  json_number(accuracy) + ",\"classes\":[";
  for (long c = 0; c < classes; ++c) {
    s += std::string(c ? "," : "") + "{\"class\":" + std::to_string(c) + ",\"precision\":" +
         json_number(per[c].precision) + ",\"recall\":" + json_number(per[c].recall) + ",\"f1\":" +
         json_number(per[c].f1) + ",\"support\":" + json_number(per[c].support) + "}";
  }
  s += "],\"macro\":{\"precision\":" + json_number(macro.precision) + ",\"recall\":" + json_number(macro.recall) +
       ",\"f1\":" + json_number(macro.f1) + "},\"confusion\":[";
  for (long t = 0; t < classes; ++t) {
    s += t ? ",[" : "[";
    for (long q = 0; q < classes; ++q) s += (q ? "," : "") + json_number(confusion[t * classes + q]);
    s += "]";
  }
  return s + "]}\n";
}

std::string classification_text(const ReportHeader& h, double loss, double accuracy,
                                const std::vector<double>& confusion, const std::vector<ClassMetrics>& per,
                                const Macro& macro, long classes) {
  std::string s;
  appendf(&s, "nn_eval: %s: %.0f samples, model %s, %ld classes\n", h.data.c_str(), h.samples, h.model.c_str(),
          classes);
  appendf(&s, "loss %.6f  accuracy %.6f\n\n", loss, accuracy);
  appendf(&s, "%-8s %10s %10s %10s %10s\n", "class", "precision", "recall", "f1", "support");
  for (long c = 0; c < classes; ++c) {
    appendf(&s, "%-8ld %10.4f %10.4f %10.4f %10.0f\n", c, per[c].precision, per[c].recall, per[c].f1, per[c].support);
  }
  appendf(&s, "%-8s %10.4f %10.4f %10.4f %10.0f\n\n", "macro", macro.precision, macro.recall, macro.f1, h.samples);
  appendf(&s, "confusion matrix (rows: true class, columns: predicted)\n%8s", "");
  for (long q = 0; q < classes; ++q) appendf(&s, " %7ld", q);
  s += "\n";
  for (long t = 0; t < classes; ++t) {
    appendf(&s, "%8ld", t);
    for (long q = 0; q < classes; ++q) appendf(&s, " %7.0f", confusion[t * classes + q]);
    s += "\n";
  }
  return s;
}

}  // namespace

std::string json_number(double v) {
  if (std::isnan(v)) return "null";
  if (std::isinf(v)) return v > 0 ? "1e308" : "-1e308";
  return formatted("%.10g", v);
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      appendf(&out, "\\u%04x", static_cast<unsigned>(c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string classification_report(const ReportHeader& header, double loss_sum, double correct,
                                  const std::vector<double>& confusion, long classes, bool json) {
  const double loss = loss_sum / header.samples, accuracy = correct / header.samples;
  const std::vector<ClassMetrics> per = class_metrics(confusion, classes);
  const Macro macro = macro_average(per, classes);
  return json ? classification_json(header, loss, accuracy, confusion, per, macro, classes)
              : classification_text(header, loss, accuracy, confusion, per, macro, classes);
}

std::string regression_report(const ReportHeader& header, double loss, const RegressionSums& sums, long targets,
                              bool json) {
  const RegressionMetrics rm = regression_metrics(sums, header.samples);
  std::string s;
  if (json) {
    s = "{\"samples\":" + json_number(header.samples) + ",\"model\":" + json_string(header.model) +
        ",\"task\":\"regression\",\"loss\":" + json_number(loss) + ",\"mse\":" + json_number(rm.mse) +
        ",\"mae\":" + json_number(rm.mae) + ",\"r2\":[";
    for (std::size_t j = 0; j < rm.r2.size(); ++j) s += (j ? "," : "") + json_number(rm.r2[j]);
    return s + "],\"r2_mean\":" + json_number(rm.r2_mean) + "}\n";
  }
  appendf(&s, "nn_eval: %s: %.0f samples, model %s, %ld target(s)\n", header.data.c_str(), header.samples,
          header.model.c_str(), targets);
  appendf(&s, "loss %.6f (training's: mean of |h - y|^2 / 2)  mse %.6f  mae %.6f  r2 %.6f\n", loss, rm.mse, rm.mae,
          rm.r2_mean);
  if (targets > 1) {
    for (long i = 0; i < targets; ++i) appendf(&s, "  target %ld: r2 %.6f\n", i, rm.r2[i]);
  }
  return s;
}

}  // namespace nn_dist
