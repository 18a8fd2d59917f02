//! Integration tests: the real server on port 0 against mock upstreams.

mod support;

mod ingest;
mod official_account;
mod render;
mod wxpusher;
