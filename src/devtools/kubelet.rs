//! A directory laid out like the kubelet's atomic writer makes a Secret, ConfigMap or Downward
//! API volume, and updated the same way: `<file> -> ..data/<file>`, `..data -> ..<generation>`,
//! the content in the generation's directory; an update writes a new generation, renames a
//! `..data_tmp` link to it over `..data`, then removes the old generation. The soak rotates
//! the API key with it, and the tests the key and the Pod's labels.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub struct KubeletVolume {
    dir: PathBuf,
    file: String,
    generation: u32,
}

impl KubeletVolume {
    /// Lays out `dir` (created if missing) with `file` holding `content`.
    pub fn new(dir: &Path, file: &str, content: &str) -> io::Result<KubeletVolume> {
        fs::create_dir_all(dir)?;
        let mut v = KubeletVolume {
            dir: dir.to_path_buf(),
            file: file.to_string(),
            generation: 0,
        };
        let first = v.write_generation(content)?;
        symlink(&first, dir.join("..data"))?;
        symlink(format!("..data/{file}"), dir.join(file))?;
        Ok(v)
    }

    /// The file as the container sees it.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }

    /// What the kubelet does when the Secret or ConfigMap changes.
    pub fn update(&mut self, content: &str) -> io::Result<()> {
        let old = fs::read_link(self.dir.join("..data"))?;
        let next = self.write_generation(content)?;
        let tmp = self.dir.join("..data_tmp");
        symlink(&next, &tmp)?;
        fs::rename(&tmp, self.dir.join("..data"))?;
        fs::remove_dir_all(self.dir.join(old))
    }

    fn write_generation(&mut self, content: &str) -> io::Result<String> {
        self.generation += 1;
        let name = format!(
            "..2026_11_26_10_00_{:02}.{:09}",
            self.generation % 60,
            self.generation
        );
        fs::create_dir(self.dir.join(&name))?;
        fs::write(self.dir.join(&name).join(&self.file), content)?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_swaps_the_content_behind_the_same_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut v = KubeletVolume::new(&dir.path().join("secret"), "api-key", "one").expect("new");
        assert_eq!(fs::read_to_string(v.path()).expect("read"), "one");
        v.update("two").expect("update");
        assert_eq!(fs::read_to_string(v.path()).expect("read"), "two");
        let generations = fs::read_dir(dir.path().join("secret"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("..2026"))
            .count();
        assert_eq!(generations, 1, "the old generation is removed");
    }
}
