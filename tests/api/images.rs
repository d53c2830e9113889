use crate::helpers as _;
