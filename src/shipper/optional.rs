//! Settings that may be left unset, written as an empty string in the file and in the
//! environment (`SIDELOG_METRICS_LISTEN=` turns the endpoint off). In the code they are an
//! `Option` of the type they are parsed into, parsed once at load; an unset one is written
//! back as `""`, so `sidelog check` shows every key.
//!
//! Use with `#[serde(with = "crate::optional::parsed")]` (any `FromStr + Display`),
//! `crate::optional::string` or `crate::optional::path`.

use serde::{Deserialize, Deserializer, Serializer};

/// `Option<T>` for `T: FromStr + Display`; a parse error names the value.
pub mod parsed {
    use super::*;

    pub fn serialize<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim()
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// `Option<T>` for a number written as a number, or as text (the environment's), or empty.
pub mod number {
    use super::*;

    pub fn serialize<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::parsed::serialize(v, s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: std::str::FromStr + TryFrom<i64>,
        T::Err: std::fmt::Display,
        D: Deserializer<'de>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => T::try_from(n)
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("{n} is out of range"))),
            Raw::Text(t) if t.trim().is_empty() => Ok(None),
            Raw::Text(t) => t.trim().parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// `Option<String>`: empty is unset.
pub mod string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then_some(text))
    }
}

/// `Option<PathBuf>`: empty is unset.
pub mod path {
    use super::*;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(p) => s.collect_str(&p.display()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then(|| PathBuf::from(text)))
    }
}
