//! `[[datadog.additional_endpoints]]`: more intakes every batch also goes to (dual shipping,
//! the Datadog Agent's `logs_config.additional_endpoints`).

use std::path::PathBuf;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::{Compression, DatadogConfig, Site};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdditionalEndpoint {
    pub site: Site,
    /// Base URL overriding `site`.
    #[serde(with = "crate::optional::parsed")]
    pub endpoint: Option<Url>,
    /// File holding this endpoint's API key (required).
    #[serde(with = "crate::optional::path")]
    pub api_key_file: Option<PathBuf>,
    /// A key written out in the Datadog Agent's `additional_endpoints` (never printed).
    #[serde(skip)]
    pub api_key: Option<crate::secret::InlineKey>,
    pub compression: Compression,
    #[serde(with = "crate::optional::number")]
    pub compression_level: Option<i32>,
    /// true: a file's checkpoint advances only once this endpoint accepted its lines too, and
    /// while it is down the others wait. false: best effort; when it falls behind or is down
    /// its copies are dropped and counted, and it never holds back the others.
    pub reliable: bool,
}

impl Default for AdditionalEndpoint {
    fn default() -> Self {
        AdditionalEndpoint {
            site: Site::Us1,
            endpoint: None,
            api_key_file: None,
            api_key: None,
            compression: Compression::Auto,
            compression_level: None,
            reliable: true,
        }
    }
}

impl AdditionalEndpoint {
    /// The settings of the main endpoint with this one's destination, key and codec.
    pub fn as_datadog(&self, main: &DatadogConfig) -> DatadogConfig {
        DatadogConfig {
            site: self.site,
            endpoint: self.endpoint.clone(),
            api_key_file: self.api_key_file.clone(),
            api_key: self.api_key.clone(),
            compression: self.compression,
            compression_level: self.compression_level,
            additional_endpoints: Vec::new(),
            ..main.clone()
        }
    }
}
