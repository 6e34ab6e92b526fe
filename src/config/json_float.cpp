// json_float(): a float's shortest decimal (std::to_chars) re-read as a double.
#include "llmtrain/json_float.h"

#include <charconv>
#include <cmath>

namespace llmtrain {

double json_float(float f) {
  if (!std::isfinite(f)) return (double)f;
  char buf[64];
  auto w = std::to_chars(buf, buf + sizeof buf, f);  // shortest form that round-trips as float
  double d = 0;
  std::from_chars(buf, w.ptr, d);  // locale-independent, unlike strtod
  // Reading the decimal as a double and then narrowing rounds twice; should that ever land on the
  // other float, the widened value is still exact.
  return (float)d == f ? d : (double)f;
}

}  // namespace llmtrain
