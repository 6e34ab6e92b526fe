// Small helpers more than one layer needs: durable file writes (shards, checkpoints, manifests,
// metrics), suffix tests and the duration format of progress lines. Plain C++17 and POSIX.
#pragma once
#include <string>

namespace llmtrain {

// Writes `content` to `path` via a temp file in the same directory: write, fsync, rename, fsync the
// directory. Readers see either the old or the new content, never a torn file. The temp file is
// created exclusively and the rename replaces `path` itself, so a symlink at either name is never
// written through. RuntimeError naming the file on any failed call (the temp file is removed).
void write_file_atomic(const std::string& path, const std::string& content);

// Durability helpers shared by the shard and safetensors writers. RuntimeError naming the path.
void fsync_path(const std::string& path);        // a regular file or a directory
void fsync_parent_dir(const std::string& path);  // the directory containing `path`

bool ends_with(const std::string& s, const std::string& suffix);

// "1:02:03" / "4:05" for ETA display; "?" for negative, non-finite or absurd values.
std::string format_duration(double seconds);

}  // namespace llmtrain
