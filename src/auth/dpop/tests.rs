//! Tests of DPoP proofs and bound tokens.
