//! seqmodels
