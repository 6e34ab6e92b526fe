// float32 values in JSON. nlohmann writes numbers as doubles, so a float widened to double prints
// its binary noise (1e-5f as 9.999999747378752e-06). json_float() gives the double that prints as
// the float's shortest round-tripping decimal instead ("1e-05"), and reading that back as a float
// gives the same float: use it wherever a float field is written to JSON (resolved configs,
// Hugging Face exports, metrics).
#pragma once

namespace llmtrain {

// The double nearest to the shortest decimal that reads back as exactly `f` when parsed as a float.
double json_float(float f);

}  // namespace llmtrain
