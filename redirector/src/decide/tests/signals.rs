//! Reactive signals: error_limit, the on_error actions, which members they
//! count on, and what a flip records of them.

use super::*;
