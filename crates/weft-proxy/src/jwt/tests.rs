//! Unit tests: token form verdicts, requirement logic, outputs.

use super::token::{Jwt, Status};

#[test]
fn form_verdicts_are_envoys() {
    assert_eq!(Jwt::parse("a.b").unwrap_err(), Status::BadFormat);
    assert_eq!(Jwt::parse("a.b.c.d").unwrap_err(), Status::BadFormat);
    assert_eq!(Jwt::parse("!.b.c").unwrap_err(), Status::HeaderBadBase64);
    // {"alg":1}
    assert_eq!(
        Jwt::parse("eyJhbGciOjF9.e30.").unwrap_err(),
        Status::HeaderBadAlg
    );
    // {"alg":"none"}
    assert_eq!(
        Jwt::parse("eyJhbGciOiJub25lIn0.e30.").unwrap_err(),
        Status::HeaderNotImplementedAlg
    );
    // {"alg":"RS256"} . {"exp":"x"}
    assert_eq!(
        Jwt::parse("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiJ4In0.").unwrap_err(),
        Status::ExpNotInteger
    );
    let ok = Jwt::parse("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjEwMCwibmJmIjo1MH0.c2ln").unwrap();
    assert_eq!((ok.exp, ok.nbf), (100, 50));
    assert_eq!(ok.check_time(120, 60), Ok(()));
    assert_eq!(ok.check_time(161, 60), Err(Status::Expired));
    assert_eq!(ok.check_time(0, 10), Err(Status::NotYetValid));
}
