// Special-token splitting shared by the tokenizers: text is cut at every occurrence of a special
// string (the earliest first; the longest where several start at the same byte), the pieces in
// between go to the ordinary encoder and each special string becomes its single id.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmtrain {

// Calls plain(segment) for each stretch of ordinary text (possibly empty) and special(id) for each
// special string, in text order.
template <typename Id, typename Plain, typename Special>
void split_on_specials(std::string_view text, const std::vector<std::pair<std::string, Id>>& specials, Plain&& plain,
                       Special&& special) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    Id best_id{};
    for (const auto& [s, id] : specials) {
      const size_t f = text.find(s, pos);
      if (f < best || (f == best && f != std::string_view::npos && s.size() > best_len)) {
        best = f;
        best_len = s.size();
        best_id = id;
      }
    }
    if (best == std::string_view::npos) break;
    plain(text.substr(pos, best - pos));
    special(best_id);
    pos = best + best_len;
  }
  plain(text.substr(pos));
}

}  // namespace llmtrain
