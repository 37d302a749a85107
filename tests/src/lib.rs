//! End-to-end tests of QLOCK against real multi-process clusters on
//! 127.0.0.1, each bounded in time and stopping what it started. The tests
//! themselves live in `tests/tests/`.
