//! End-to-end tests only (see `tests/`): the whole pipeline with real processes of each part,
//! kept out of the service crates so neither service depends on the other.
