//! Authentication: a mutual HMAC-SHA256 challenge–response at the start of
//! a connection, and the rules for what an authenticated (or anonymous)
//! connection may send. The handshake and the rules are sans-IO (no socket,
//! no clock; nonces are passed in, the drivers draw them from the OS CSPRNG
//! with [`random_nonce`]); only [`Key::load`] reads a file. `stream.rs` is the blocking driver used by
//! clients; the runtime drives the same state machines from its event loop.
//!
//! The handshake (kinds 0x50–0x52, `wire/PROTOCOL.md` section 5.7):
//!
//! ```text
//! dialer → server   AuthHello     { role, gid, replica, nonce_c }
//! server → dialer   AuthChallenge { nonce_s, mac_s = HMAC(key, "synod server" || nonce_c || nonce_s || identity) }
//! dialer → server   AuthProof     { mac_c = HMAC(key, "synod client" || nonce_s || nonce_c || identity) }
//! ```
//!
//! `identity` is the 9 bytes `role u8, gid u32, replica u32` of the hello.
//! The key is the cluster key for every role but `Client`, which uses the
//! client key. The dialer checks `mac_s` before it sends anything else (so
//! it never talks to a server that does not hold the key), and the server
//! checks `mac_c` before it acts on anything else. Each side's nonce is
//! fresh, so a recorded handshake cannot be replayed, and the two labels
//! differ, so one side's MAC is never valid as the other's. Tags are
//! compared in constant time (`Mac::verify_slice`).

pub mod dial;
pub mod stream;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use synod_wire::{
    AuthChallenge, AuthHello, AuthProof, AuthRole, GroupId, ReplicaId, AUTH_MAC_LEN, AUTH_NONCE_LEN,
};

type HmacSha256 = Hmac<Sha256>;

const SERVER_LABEL: &[u8] = b"synod server";
const CLIENT_LABEL: &[u8] = b"synod client";

/// A key shorter than this is refused: it is a secret, not a password.
pub const MIN_KEY_BYTES: usize = 16;

/// A shared secret (the cluster key or the client key). Cheap to clone;
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Arc<Vec<u8>>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

impl Key {
    /// A key of these bytes (at least [`MIN_KEY_BYTES`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Key, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "a key must be at least {MIN_KEY_BYTES} bytes (it has {}); make one with \
                 `head -c 32 /dev/urandom > key`",
                bytes.len()
            ));
        }
        Ok(Key(Arc::new(bytes)))
    }

    /// The whole content of `path`, byte for byte (binary keys are fine;
    /// every party must read the same file).
    pub fn load(path: &Path) -> Result<Key, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "key file {} is readable by other users (mode {:o}); chmod 600 it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
            }
        }
        Key::from_bytes(bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// 32 bytes from the OS CSPRNG.
    pub fn generate() -> Result<Key, String> {
        let mut b = vec![0u8; 32];
        getrandom::fill(&mut b).map_err(|e| format!("no OS randomness: {e}"))?;
        Ok(Key(Arc::new(b)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

/// A fresh nonce from the OS CSPRNG.
pub fn random_nonce() -> Result<[u8; AUTH_NONCE_LEN], String> {
    let mut n = [0u8; AUTH_NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(n)
}

/// `a == b` in time that depends on neither's content nor where they
/// differ (both are hashed first, so not on the lengths' relation either):
/// for passwords such as the RESP gateway's.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest;
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Who a connection authenticated as (what its dialer proved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Replica `replica` of group `gid`: its Paxos messages, and only those
    /// of that group and that sender.
    Peer { gid: GroupId, replica: ReplicaId },
    /// A core of another server: the replication messages of every group,
    /// on one connection (see `wire/PROTOCOL.md` 5.7). Any group and any
    /// sender, as any holder of the cluster key could claim with `Peer`
    /// anyway: the per-group check of `Peer` catches a misrouted message,
    /// not an attacker.
    Link,
    /// A server of the cluster: migration RPCs.
    Node,
    /// An operator (or a server's configuration watcher): admin operations.
    Admin,
    /// A KV client holding the client key.
    Client,
}

impl Identity {
    pub fn role(&self) -> AuthRole {
        match self {
            Identity::Peer { .. } => AuthRole::Peer,
            Identity::Link => AuthRole::Link,
            Identity::Node => AuthRole::Node,
            Identity::Admin => AuthRole::Admin,
            Identity::Client => AuthRole::Client,
        }
    }

    /// Proved with the cluster key.
    pub fn is_cluster(&self) -> bool {
        !matches!(self, Identity::Client)
    }

    fn from_hello(h: &AuthHello) -> Result<Identity, AuthError> {
        match h.role {
            AuthRole::Peer => Ok(Identity::Peer {
                gid: h.gid,
                replica: h.replica,
            }),
            _ if h.gid != 0 || h.replica != 0 => Err(AuthError::BadHello),
            AuthRole::Link => Ok(Identity::Link),
            AuthRole::Node => Ok(Identity::Node),
            AuthRole::Admin => Ok(Identity::Admin),
            AuthRole::Client => Ok(Identity::Client),
        }
    }

    fn hello_fields(&self) -> (GroupId, ReplicaId) {
        match *self {
            Identity::Peer { gid, replica } => (gid, replica),
            _ => (0, 0),
        }
    }

    /// The 9 bytes the MACs bind: `role u8, gid u32, replica u32` (LE).
    fn bytes(&self) -> [u8; 9] {
        let (gid, replica) = self.hello_fields();
        let mut b = [0u8; 9];
        b[0] = self.role() as u8;
        b[1..5].copy_from_slice(&gid.to_le_bytes());
        b[5..9].copy_from_slice(&replica.to_le_bytes());
        b
    }
}

/// The keys a server holds. No cluster key: peer, migration and admin
/// traffic is open (as before authentication existed). No client key: KV
/// requests and queries are open.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub cluster: Option<Key>,
    pub client: Option<Key>,
}

impl Keys {
    /// The key a dialer claiming `role` must hold.
    pub fn for_role(&self, role: AuthRole) -> Option<&Key> {
        match role {
            AuthRole::Client => self.client.as_ref(),
            _ => self.cluster.as_ref(),
        }
    }

    pub fn any(&self) -> bool {
        self.cluster.is_some() || self.client.is_some()
    }
}

/// Why a handshake failed. The runtime logs it and closes the connection;
/// nothing about the key leaks through it (the dialer only sees a close).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// This server holds no key for the role claimed.
    NoKeyForRole(AuthRole),
    /// A non-peer hello with a nonzero gid or replica.
    BadHello,
    /// The other side does not hold the key (or the frames were altered).
    BadMac,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoKeyForRole(r) => {
                write!(f, "no key configured for role {r:?} on this server")
            }
            AuthError::BadHello => f.write_str("malformed AuthHello"),
            AuthError::BadMac => f.write_str("wrong key (MAC mismatch)"),
        }
    }
}

fn server_mac(key: &Key, id: &Identity, nonce_c: &[u8], nonce_s: &[u8]) -> HmacSha256 {
    let mut m = key.mac();
    m.update(SERVER_LABEL);
    m.update(nonce_c);
    m.update(nonce_s);
    m.update(&id.bytes());
    m
}

fn client_mac(key: &Key, id: &Identity, nonce_c: &[u8], nonce_s: &[u8]) -> HmacSha256 {
    let mut m = key.mac();
    m.update(CLIENT_LABEL);
    m.update(nonce_s);
    m.update(nonce_c);
    m.update(&id.bytes());
    m
}

fn tag(m: HmacSha256) -> [u8; AUTH_MAC_LEN] {
    m.finalize().into_bytes().into()
}

/// The dialer's side: made with the hello to send; consumes the server's
/// challenge and yields the proof to send, after which the connection is
/// authenticated both ways.
#[derive(Debug)]
pub struct Dialer {
    key: Key,
    identity: Identity,
    nonce: [u8; AUTH_NONCE_LEN],
}

impl Dialer {
    pub fn new(key: &Key, identity: Identity, nonce: [u8; AUTH_NONCE_LEN]) -> (Dialer, AuthHello) {
        let (gid, replica) = identity.hello_fields();
        let hello = AuthHello {
            role: identity.role(),
            gid,
            replica,
            nonce,
        };
        (
            Dialer {
                key: key.clone(),
                identity,
                nonce,
            },
            hello,
        )
    }

    /// The identity this dialer claims.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Checks that the server holds the key, then proves that we do.
    pub fn on_challenge(self, c: &AuthChallenge) -> Result<AuthProof, AuthError> {
        server_mac(&self.key, &self.identity, &self.nonce, &c.nonce)
            .verify_slice(&c.mac)
            .map_err(|_| AuthError::BadMac)?;
        Ok(AuthProof {
            mac: tag(client_mac(&self.key, &self.identity, &self.nonce, &c.nonce)),
        })
    }
}

/// The server's side after it answered a hello: waits for the proof.
#[derive(Debug)]
pub struct Accepting {
    key: Key,
    identity: Identity,
    nonce_c: [u8; AUTH_NONCE_LEN],
    nonce_s: [u8; AUTH_NONCE_LEN],
}

impl Accepting {
    /// Answer a hello with our nonce `nonce_s` and our proof of the key.
    pub fn on_hello(
        keys: &Keys,
        hello: &AuthHello,
        nonce_s: [u8; AUTH_NONCE_LEN],
    ) -> Result<(Accepting, AuthChallenge), AuthError> {
        let identity = Identity::from_hello(hello)?;
        let key = keys
            .for_role(hello.role)
            .ok_or(AuthError::NoKeyForRole(hello.role))?;
        let mac = tag(server_mac(key, &identity, &hello.nonce, &nonce_s));
        Ok((
            Accepting {
                key: key.clone(),
                identity,
                nonce_c: hello.nonce,
                nonce_s,
            },
            AuthChallenge {
                nonce: nonce_s,
                mac,
            },
        ))
    }

    /// The claimed identity, not yet proved.
    pub fn claimed(&self) -> Identity {
        self.identity
    }

    /// The identity the dialer proved, or why not.
    pub fn on_proof(self, p: &AuthProof) -> Result<Identity, AuthError> {
        client_mac(&self.key, &self.identity, &self.nonce_c, &self.nonce_s)
            .verify_slice(&p.mac)
            .map_err(|_| AuthError::BadMac)?;
        Ok(self.identity)
    }
}

/// What a frame asks to do, for [`permit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// A Paxos message of group `gid` from replica `from`.
    Paxos { gid: GroupId, from: ReplicaId },
    /// ShardPull / ShardDelete from another group.
    Migration,
    /// Master Join / Leave / Move, and operator status requests.
    Admin,
    /// A KV request or a master Query.
    Client,
}

/// Whether a connection authenticated as `who` (`None`: not authenticated)
/// may do `need` on a server holding `keys`. `Err` names the reason, for
/// the log and the refusal.
pub fn permit(keys: &Keys, who: Option<&Identity>, need: Need) -> Result<(), &'static str> {
    match need {
        Need::Client => match (&keys.client, who) {
            (None, _) | (Some(_), Some(_)) => Ok(()),
            (Some(_), None) => Err("authentication required (client key)"),
        },
        _ if keys.cluster.is_none() => Ok(()),
        Need::Paxos { gid, from } => match who {
            Some(Identity::Peer { gid: g, replica }) if *g == gid && *replica == from => Ok(()),
            Some(Identity::Link) => Ok(()),
            Some(Identity::Peer { .. }) => Err(
                "Paxos message for another group or replica than the connection authenticated as",
            ),
            Some(_) => Err("Paxos message on a connection not authenticated as a replica"),
            None => Err("Paxos message on an unauthenticated connection"),
        },
        Need::Migration | Need::Admin => match who {
            Some(id) if id.is_cluster() => Ok(()),
            _ => Err("authentication required (cluster key)"),
        },
    }
}

#[cfg(test)]
mod tests;
