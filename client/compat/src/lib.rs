//! Empty: the compatibility tests live in `tests/`.
