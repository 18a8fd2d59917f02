//! Integration tests: the real server on port 0 against mock upstreams.

mod support;

mod alertmanager;
mod ingest;
mod render;
mod wxpusher;
