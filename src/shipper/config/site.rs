//! `datadog.site`: the Datadog sites and their logs intakes. Anything else is refused, not
//! guessed (a typo would send the key to someone else's domain).

use serde::{Deserialize, Serialize};

/// A Datadog site. Anything else is refused, not guessed: a typo would send the key to
/// someone else's domain (`datadog.endpoint` covers other intakes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    Us1,
    Us3,
    Us5,
    Eu,
    Ap1,
    Ap2,
    Us1Fed,
}

impl Site {
    /// Every site: its configuration value and its logs intake host.
    pub const ALL: [(Site, &'static str, &'static str); 7] = [
        (Site::Us1, "datadoghq.com", "http-intake.logs.datadoghq.com"),
        (
            Site::Us3,
            "us3.datadoghq.com",
            "http-intake.logs.us3.datadoghq.com",
        ),
        (
            Site::Us5,
            "us5.datadoghq.com",
            "http-intake.logs.us5.datadoghq.com",
        ),
        (Site::Eu, "datadoghq.eu", "http-intake.logs.datadoghq.eu"),
        (
            Site::Ap1,
            "ap1.datadoghq.com",
            "http-intake.logs.ap1.datadoghq.com",
        ),
        (
            Site::Ap2,
            "ap2.datadoghq.com",
            "http-intake.logs.ap2.datadoghq.com",
        ),
        (
            Site::Us1Fed,
            "ddog-gov.com",
            "http-intake.logs.ddog-gov.com",
        ),
    ];

    fn entry(self) -> (Site, &'static str, &'static str) {
        Site::ALL
            .into_iter()
            .find(|(s, _, _)| *s == self)
            .unwrap_or(Site::ALL[0])
    }

    pub fn intake_host(self) -> &'static str {
        self.entry().2
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.entry().1)
    }
}

impl std::str::FromStr for Site {
    type Err = String;

    fn from_str(s: &str) -> Result<Site, String> {
        Site::ALL
            .into_iter()
            .find(|(_, name, _)| *name == s.trim())
            .map(|(site, _, _)| site)
            .ok_or_else(|| {
                let known: Vec<&str> = Site::ALL.iter().map(|(_, n, _)| *n).collect();
                format!(
                    "{s:?} is not a Datadog site (allowed: {}; set datadog.endpoint for any other intake)",
                    known.join(", ")
                )
            })
    }
}

impl Serialize for Site {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Site {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
