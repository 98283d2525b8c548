//! Tailing: files found, read, rotated, truncated, deleted and hostile (`files`), and
//! rotation at full speed and of quiet files (`rotation`).

mod files;
mod rotation;
