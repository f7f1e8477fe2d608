//! `source = { type = "mongodb", ... }`: typed config of the MongoDB adapter.

use mongodb::bson::{Bson, Document};
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use serde::Deserialize;

use crate::problems::Problems;

/// `full_document`: what updates carry as `fullDocument`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FullDocument {
    /// The server's default (no full document for updates).
    #[default]
    Default,
    /// Look the current document up.
    UpdateLookup,
    /// The post-image when the collection records one.
    WhenAvailable,
    /// The post-image, or an error.
    Required,
}

/// `full_document_before_change`: whether changes carry a pre-image.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FullDocumentBeforeChange {
    /// No pre-image.
    #[default]
    Off,
    /// The pre-image when the collection records one.
    WhenAvailable,
    /// The pre-image, or an error.
    Required,
}

/// A MongoDB change stream feeding one route: one collection, a whole database, or the
/// whole deployment.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// Connection string (a replica set; may hold credentials, never logged).
    pub uri: String,
    /// Database watched (or holding the collection).
    #[serde(default)]
    pub database: Option<String>,
    /// Collection watched; absent: the whole database.
    #[serde(default)]
    pub collection: Option<String>,
    /// Watch every database of the deployment (then `database` and `collection` must be
    /// absent).
    #[serde(default)]
    pub watch_deployment: bool,
    /// Aggregation stages applied by the server (`$match`, `$project`, ...), as tables;
    /// values may use Extended JSON (`{ "$date" = "..." }`).
    #[serde(default)]
    pub pipeline: Vec<serde_json::Value>,
    /// `default`, `updateLookup`, `whenAvailable` or `required`.
    #[serde(default)]
    pub full_document: FullDocument,
    /// `off`, `whenAvailable` or `required`.
    #[serde(default)]
    pub full_document_before_change: FullDocumentBeforeChange,
}

impl std::fmt::Debug for MongoSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoSourceConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("database", &self.database)
            .field("collection", &self.collection)
            .field("watch_deployment", &self.watch_deployment)
            .field("pipeline", &self.pipeline)
            .field("full_document", &self.full_document)
            .field(
                "full_document_before_change",
                &self.full_document_before_change,
            )
            .finish()
    }
}

/// The URI with any password replaced.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &uri[..s], &uri[at + 1..]),
        _ => uri.to_owned(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 120 && !s.contains(['/', '\\', '.', ' ', '"', '$', '\0'])
}

impl MongoSourceConfig {
    /// Report every problem of this section under `at`.
    pub(crate) fn validate(&self, at: &str, p: &mut Problems) {
        if !(self.uri.starts_with("mongodb://") || self.uri.starts_with("mongodb+srv://")) {
            p.push(
                format!("{at}.uri"),
                "must be a mongodb:// or mongodb+srv:// connection string",
            );
        } else if let Err(e) = mongodb::options::ConnectionString::parse(&self.uri) {
            p.push(
                format!("{at}.uri"),
                format!("invalid connection string: {}", redact_uri(&e.to_string())),
            );
        }
        match (self.watch_deployment, &self.database, &self.collection) {
            (true, None, None) => {}
            (true, _, _) => p.push(
                format!("{at}.watch_deployment"),
                "excludes `database` and `collection`",
            ),
            (false, None, _) => p.push(
                format!("{at}.database"),
                "is required unless watch_deployment = true",
            ),
            (false, Some(db), coll) => {
                if !valid_name(db) {
                    p.push(format!("{at}.database"), "must be a database name");
                }
                if let Some(c) = coll {
                    if c.is_empty() || c.contains(['$', '\0']) {
                        p.push(format!("{at}.collection"), "must be a collection name");
                    }
                }
            }
        }
        for (i, stage) in self.pipeline.iter().enumerate() {
            match Self::stage(stage) {
                Ok(doc) if doc.len() == 1 && doc.keys().all(|k| k.starts_with('$')) => {}
                Ok(_) => p.push(
                    format!("{at}.pipeline[{i}]"),
                    "must be one stage like `{ \"$match\" = { ... } }`",
                ),
                Err(e) => p.push(format!("{at}.pipeline[{i}]"), e),
            }
        }
    }

    fn stage(v: &serde_json::Value) -> Result<Document, String> {
        match Bson::try_from(v.clone()).map_err(|e| format!("not valid Extended JSON: {e}"))? {
            Bson::Document(d) => Ok(d),
            _ => Err("must be a table".into()),
        }
    }

    /// The pipeline as BSON documents (validated at load).
    pub fn pipeline_docs(&self) -> Vec<Document> {
        self.pipeline
            .iter()
            .filter_map(|v| Self::stage(v).ok())
            .collect()
    }

    /// The driver's `fullDocument` option.
    pub fn full_document_option(&self) -> Option<FullDocumentType> {
        match self.full_document {
            FullDocument::Default => None,
            FullDocument::UpdateLookup => Some(FullDocumentType::UpdateLookup),
            FullDocument::WhenAvailable => Some(FullDocumentType::WhenAvailable),
            FullDocument::Required => Some(FullDocumentType::Required),
        }
    }

    /// The driver's `fullDocumentBeforeChange` option.
    pub fn before_change_option(&self) -> Option<FullDocumentBeforeChangeType> {
        match self.full_document_before_change {
            FullDocumentBeforeChange::Off => None,
            FullDocumentBeforeChange::WhenAvailable => {
                Some(FullDocumentBeforeChangeType::WhenAvailable)
            }
            FullDocumentBeforeChange::Required => Some(FullDocumentBeforeChangeType::Required),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_uri("mongodb://u:p@h:1/?x=1"),
            "mongodb://<redacted>@h:1/?x=1"
        );
        assert_eq!(redact_uri("mongodb://h:1"), "mongodb://h:1");
    }

    #[test]
    fn pipeline_from_extended_json() {
        let cfg: MongoSourceConfig = serde_json::from_value(serde_json::json!({
            "uri": "mongodb://h:1", "database": "d",
            "pipeline": [{"$match": {"operationType": "insert", "at": {"$gte": {"$date": "2024-01-01T00:00:00Z"}}}}]
        }))
        .unwrap();
        let docs = cfg.pipeline_docs();
        assert!(matches!(
            docs[0]
                .get_document("$match")
                .unwrap()
                .get_document("at")
                .unwrap()
                .get("$gte"),
            Some(Bson::DateTime(_))
        ));
        let mut p = Problems::default();
        cfg.validate("s", &mut p);
        assert!(p.is_empty());
    }
}
