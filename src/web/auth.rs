//! Basic authentication: which requests may pass at once, which need a bcrypt
//! verification, and which come from a source that keeps failing.
//!
//! bcrypt is slow on purpose (about 60 ms at cost 10), so it must never run where a
//! request that already proved itself waits: the event loop asks [`Auth::gate`], which
//! is cheap, and only a request whose credentials were not verified before is handed to
//! the server's bcrypt pool ([`Auth::verify`]). A successful verification is cached as a
//! SHA-256 digest of user, password and hash (compared in constant time), so a scraper
//! pays bcrypt once; failures are not cached, they are counted per source address (so
//! are credentials refused unverified because the bcrypt queue was full), and a source
//! past [`FREE_FAILURES`] failures is refused without bcrypt for a back-off that doubles
//! with each further failure, up to [`MAX_BACKOFF`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::sync::lock;

/// Failed verifications a source may have before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest back-off of a failing source.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Sources remembered at most (a spread-out attack cannot grow the table without bound).
const MAX_SOURCES: usize = 4096;

/// What to do with a request, decided without bcrypt.
#[derive(Debug)]
pub enum Gate {
    /// No users configured, or credentials verified before.
    Pass,
    /// No usable `Authorization: Basic` header: 401.
    Unauthorized,
    /// The source keeps failing: 429, retry after this long.
    Throttled(Duration),
    /// The credentials need a bcrypt verification.
    Verify(Verification),
}

/// Credentials waiting for bcrypt. Holds a password: never printed.
pub struct Verification {
    user: String,
    password: String,
    /// The user's hash; for an unknown user another configured hash, so that the
    /// answer takes as long as for a wrong password.
    hash: String,
    known_user: bool,
    source: IpAddr,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("user", &self.user)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How a source has failed so far.
#[derive(Clone, Copy, Debug)]
struct Failing {
    count: u32,
    last: Instant,
}

impl Failing {
    /// How long the source must still wait, if it must.
    fn blocked_for(&self, now: Instant) -> Option<Duration> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let backoff = Duration::from_secs(1u64 << over.min(16)).min(MAX_BACKOFF);
        (self.last + backoff)
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }
}

/// The verified-credentials cache and the failures per source, shared by the event loop
/// and the bcrypt pool.
#[derive(Debug, Default)]
pub struct Auth {
    verified: std::sync::Mutex<HashMap<String, [u8; 32]>>,
    failures: std::sync::Mutex<HashMap<IpAddr, Failing>>,
}

impl Auth {
    /// Decides without bcrypt whether a request passes, is refused, or needs verifying.
    pub fn gate(
        &self,
        users: &HashMap<String, String>,
        authorization: Option<&str>,
        peer: IpAddr,
    ) -> Gate {
        if users.is_empty() {
            return Gate::Pass;
        }
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Gate::Unauthorized;
        };
        if let Some(hash) = users.get(&user) {
            let digest = credential_digest(&user, &password, hash);
            if lock(&self.verified)
                .get(&user)
                .is_some_and(|known| constant_time_eq(known, &digest))
            {
                return Gate::Pass;
            }
        }
        let source = source_of(peer);
        if let Some(wait) = lock(&self.failures)
            .get(&source)
            .and_then(|f| f.blocked_for(Instant::now()))
        {
            return Gate::Throttled(wait);
        }
        let (hash, known_user) = match users.get(&user) {
            Some(hash) => (hash.clone(), true),
            // Users is not empty, so there is a hash to spend the time on.
            None => (users.values().next().cloned().unwrap_or_default(), false),
        };
        Gate::Verify(Verification {
            user,
            password,
            hash,
            known_user,
            source,
        })
    }

    /// Runs bcrypt (slow: call it on the bcrypt pool); a success is cached and clears the
    /// source's failures, a failure is counted against the source.
    pub fn verify(&self, v: &Verification) -> bool {
        let matches = bcrypt::verify(&v.password, &v.hash).unwrap_or(false);
        let ok = matches && v.known_user;
        if ok {
            let digest = credential_digest(&v.user, &v.password, &v.hash);
            lock(&self.verified).insert(v.user.clone(), digest);
            lock(&self.failures).remove(&v.source);
        } else {
            self.record_failure(v.source, Instant::now());
        }
        ok
    }

    /// Counts credentials that could not even be verified (the bcrypt queue was full)
    /// against their source, as a failure: a flood is slowed down before it is verified.
    pub fn count_unverified(&self, v: &Verification) {
        self.record_failure(v.source, Instant::now());
    }

    /// Forgets verified credentials (the users or their hashes changed).
    pub fn forget_verified(&self) {
        lock(&self.verified).clear();
    }

    fn record_failure(&self, source: IpAddr, now: Instant) {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_SOURCES && !failures.contains_key(&source) {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
            if failures.len() >= MAX_SOURCES
                && let Some(oldest) = failures.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(source).or_insert(Failing {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }
}

/// The address failures are counted against: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64).
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

fn credential_digest(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes `Basic base64(user:password)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(u: &str, p: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{u}:{p}").as_bytes()))
    }

    fn users() -> HashMap<String, String> {
        let hash = bcrypt::hash("right", 4).unwrap();
        [("prom".to_string(), hash)].into_iter().collect()
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// Runs the gate and, when it asks, the verification, as the server does.
    fn passes(auth: &Auth, users: &HashMap<String, String>, h: Option<&str>) -> Option<bool> {
        match auth.gate(users, h, PEER) {
            Gate::Pass => Some(true),
            Gate::Unauthorized => Some(false),
            Gate::Throttled(_) => None,
            Gate::Verify(v) => Some(auth.verify(&v)),
        }
    }

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            parse_basic("Basic dXNlcjpwYXNz"),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(
            parse_basic("basic dXNlcjpwOmFzcw=="),
            Some(("user".into(), "p:ass".into()))
        );
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic ***",
            "Basic dXNlcg==",
            "Basic dXNlcjpwYXNz=",
            "",
        ] {
            assert_eq!(parse_basic(bad), None, "{bad}");
        }
    }

    #[test]
    fn passwords_are_checked_and_only_successes_cached() {
        let (auth, users) = (Auth::default(), users());
        assert!(matches!(auth.gate(&users, None, PEER), Gate::Unauthorized));
        assert_eq!(
            passes(&auth, &users, Some(&header("prom", "wrong"))),
            Some(false)
        );
        assert_eq!(
            passes(&auth, &users, Some(&header("other", "right"))),
            Some(false)
        );
        assert!(matches!(
            auth.gate(&users, Some(&header("prom", "right")), PEER),
            Gate::Verify(_)
        ));
        assert_eq!(
            passes(&auth, &users, Some(&header("prom", "right"))),
            Some(true)
        );
        assert_eq!(lock(&auth.verified).len(), 1);
        // Verified once: no bcrypt again, and the failures of the source are cleared.
        assert!(matches!(
            auth.gate(&users, Some(&header("prom", "right")), PEER),
            Gate::Pass
        ));
        assert!(lock(&auth.failures).is_empty());
        assert_eq!(
            passes(&auth, &users, Some(&header("prom", "righ"))),
            Some(false)
        );
        assert!(matches!(auth.gate(&HashMap::new(), None, PEER), Gate::Pass));
    }

    /// Past the free failures a source waits, longer after each further failure, while
    /// credentials verified before still pass at once.
    #[test]
    fn a_failing_source_is_slowed_down_but_verified_credentials_pass() {
        let (auth, users) = (Auth::default(), users());
        assert_eq!(
            passes(&auth, &users, Some(&header("prom", "right"))),
            Some(true)
        );
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                passes(&auth, &users, Some(&header("prom", "bad"))),
                Some(false)
            );
        }
        let Gate::Throttled(wait) = auth.gate(&users, Some(&header("prom", "bad")), PEER) else {
            panic!("not throttled after {FREE_FAILURES} failures")
        };
        assert!(
            wait <= Duration::from_secs(1) && !wait.is_zero(),
            "{wait:?}"
        );
        assert!(matches!(
            auth.gate(&users, Some(&header("prom", "right")), PEER),
            Gate::Pass
        ));
        // Another address is not affected.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert!(matches!(
            auth.gate(&users, Some(&header("prom", "bad")), other),
            Gate::Verify(_)
        ));
        let f = Failing {
            count: FREE_FAILURES + 3,
            last: Instant::now(),
        };
        let wait = f.blocked_for(Instant::now()).unwrap();
        assert!(wait > Duration::from_secs(7) && wait <= Duration::from_secs(8));
        let f = Failing {
            count: 1000,
            last: Instant::now(),
        };
        assert!(f.blocked_for(Instant::now()).unwrap() <= MAX_BACKOFF);
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let auth = Auth::default();
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            auth.record_failure(IpAddr::V4(i.into()), now);
        }
        assert_eq!(lock(&auth.failures).len(), MAX_SOURCES);
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(source_of(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    use crate::units::within;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any header: decoded or refused, never a panic.
        #[test]
        fn any_authorization_header_is_decoded_or_refused(header in "\\PC{0,80}|(?i:basic) [A-Za-z0-9+/=]{0,60}") {
            let _ = within(Duration::from_millis(200), "parse_basic", || parse_basic(&header));
            let users: HashMap<String, String> =
                [("u".to_string(), "$2y$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234".to_string())]
                    .into_iter()
                    .collect();
            // Only the decision, no bcrypt: the gate itself is cheap for any input.
            let _ = within(Duration::from_millis(200), "gate", || {
                matches!(Auth::default().gate(&users, Some(&header), PEER), Gate::Pass)
            });
        }

        /// What a client encodes decodes back: any user without a colon, any password.
        #[test]
        fn basic_credentials_round_trip(user in "[^:]{0,30}", password in "\\PC{0,40}", lower in any::<bool>()) {
            let scheme = if lower { "basic" } else { "Basic" };
            let encoded = format!("{scheme} {}", STANDARD.encode(format!("{user}:{password}")));
            prop_assert_eq!(parse_basic(&encoded), Some((user, password)));
        }
    }
}
