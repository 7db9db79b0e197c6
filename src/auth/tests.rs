use super::*;

fn key(b: u8) -> Key {
    Key::from_bytes(vec![b; 32]).unwrap()
}

fn keys(cluster: Option<u8>, client: Option<u8>) -> Keys {
    Keys {
        cluster: cluster.map(key),
        client: client.map(key),
    }
}

/// Runs a whole handshake: dialer with `dial_key` as `id`, server with `server`.
fn handshake(dial_key: &Key, id: Identity, server: &Keys) -> Result<Identity, &'static str> {
    let (dialer, hello) = Dialer::new(dial_key, id, [1; 32]);
    let (acc, challenge) =
        Accepting::on_hello(server, &hello, [2; 32]).map_err(|_| "server refused hello")?;
    let proof = dialer
        .on_challenge(&challenge)
        .map_err(|_| "dialer refused challenge")?;
    acc.on_proof(&proof).map_err(|_| "server refused proof")
}

#[test]
fn same_key_authenticates_both_ways() {
    let ks = keys(Some(7), Some(9));
    let peer = Identity::Peer { gid: 3, replica: 1 };
    assert_eq!(handshake(&key(7), peer, &ks), Ok(peer));
    assert_eq!(
        handshake(&key(7), Identity::Admin, &ks),
        Ok(Identity::Admin)
    );
    assert_eq!(handshake(&key(7), Identity::Node, &ks), Ok(Identity::Node));
    assert_eq!(handshake(&key(7), Identity::Link, &ks), Ok(Identity::Link));
    assert_eq!(
        handshake(&key(9), Identity::Client, &ks),
        Ok(Identity::Client)
    );
}

#[test]
fn a_dialer_with_the_wrong_key_refuses_the_server_first() {
    let ks = keys(Some(7), None);
    assert_eq!(
        handshake(&key(8), Identity::Admin, &ks),
        Err("dialer refused challenge")
    );
    // The client key does not open the cluster roles, nor the reverse.
    let ks = keys(Some(7), Some(9));
    assert_eq!(
        handshake(&key(9), Identity::Admin, &ks),
        Err("dialer refused challenge")
    );
    assert_eq!(
        handshake(&key(7), Identity::Client, &ks),
        Err("dialer refused challenge")
    );
}

#[test]
fn a_forged_proof_is_refused() {
    let ks = keys(Some(7), None);
    let (_, hello) = Dialer::new(&key(7), Identity::Admin, [1; 32]);
    let (acc, challenge) = Accepting::on_hello(&ks, &hello, [2; 32]).unwrap();
    // Reflecting the server's own MAC back does not work (labels differ).
    assert_eq!(
        Accepting::on_hello(&ks, &hello, [2; 32])
            .unwrap()
            .0
            .on_proof(&AuthProof { mac: challenge.mac }),
        Err(AuthError::BadMac)
    );
    assert_eq!(
        acc.on_proof(&AuthProof { mac: [0; 32] }),
        Err(AuthError::BadMac)
    );
}

#[test]
fn a_proof_is_bound_to_the_claimed_identity_and_nonces() {
    let ks = keys(Some(7), None);
    // A real replica 1's handshake...
    let (d1, h1) = Dialer::new(&key(7), Identity::Peer { gid: 1, replica: 1 }, [1; 32]);
    let (_, c1) = Accepting::on_hello(&ks, &h1, [2; 32]).unwrap();
    let p1 = d1.on_challenge(&c1).unwrap();
    // ...replayed by someone claiming replica 2 with the same nonces.
    let mut h2 = h1.clone();
    h2.replica = 2;
    let (a2, _) = Accepting::on_hello(&ks, &h2, [2; 32]).unwrap();
    assert_eq!(a2.on_proof(&p1), Err(AuthError::BadMac));
    // ...or replayed to a new server nonce.
    let (a3, _) = Accepting::on_hello(&ks, &h1, [3; 32]).unwrap();
    assert_eq!(a3.on_proof(&p1), Err(AuthError::BadMac));
    // A challenge for another identity does not satisfy the dialer either.
    let (d4, _) = Dialer::new(&key(7), Identity::Peer { gid: 1, replica: 1 }, [1; 32]);
    let (_, c2) = Accepting::on_hello(&ks, &h2, [2; 32]).unwrap();
    assert_eq!(d4.on_challenge(&c2), Err(AuthError::BadMac));
}

#[test]
fn hellos_the_server_cannot_check_are_refused() {
    let (_, hello) = Dialer::new(&key(7), Identity::Client, [1; 32]);
    assert_eq!(
        Accepting::on_hello(&keys(Some(7), None), &hello, [2; 32]).unwrap_err(),
        AuthError::NoKeyForRole(AuthRole::Client)
    );
    let (_, hello) = Dialer::new(&key(7), Identity::Admin, [1; 32]);
    assert_eq!(
        Accepting::on_hello(&keys(None, Some(7)), &hello, [2; 32]).unwrap_err(),
        AuthError::NoKeyForRole(AuthRole::Admin)
    );
    let mut bad = hello.clone();
    bad.gid = 4;
    assert_eq!(
        Accepting::on_hello(&keys(Some(7), None), &bad, [2; 32]).unwrap_err(),
        AuthError::BadHello
    );
    // A link names no group or replica in its hello (the frame header's
    // group binds it to a core).
    let (_, mut link) = Dialer::new(&key(7), Identity::Link, [1; 32]);
    link.replica = 2;
    assert_eq!(
        Accepting::on_hello(&keys(Some(7), None), &link, [2; 32]).unwrap_err(),
        AuthError::BadHello
    );
}

#[test]
fn short_keys_are_refused() {
    assert!(Key::from_bytes(vec![1; MIN_KEY_BYTES - 1]).is_err());
    assert!(Key::from_bytes(vec![1; MIN_KEY_BYTES]).is_ok());
    let a = Key::generate().unwrap();
    let b = Key::generate().unwrap();
    assert_ne!(a, b);
    assert_eq!(a.as_bytes().len(), 32);
    // Never printed.
    assert_eq!(format!("{a:?}"), "Key(32 bytes)");
}

#[test]
fn permissions_with_a_cluster_key() {
    let ks = keys(Some(7), None);
    let peer = Identity::Peer { gid: 1, replica: 2 };
    let paxos = Need::Paxos { gid: 1, from: 2 };
    assert!(permit(&ks, Some(&peer), paxos).is_ok());
    assert!(permit(&ks, Some(&peer), Need::Paxos { gid: 1, from: 0 }).is_err());
    assert!(permit(&ks, Some(&peer), Need::Paxos { gid: 2, from: 2 }).is_err());
    assert!(permit(&ks, None, paxos).is_err());
    assert!(permit(&ks, Some(&Identity::Admin), paxos).is_err());
    assert!(permit(&ks, Some(&Identity::Client), paxos).is_err());
    assert!(permit(&ks, Some(&Identity::Node), paxos).is_err());
    // A link carries every group's replication messages, from any sender.
    for need in [paxos, Need::Paxos { gid: 2, from: 0 }] {
        assert!(permit(&ks, Some(&Identity::Link), need).is_ok());
    }
    // The client key opens no link.
    let ks9 = keys(Some(7), Some(9));
    assert_eq!(
        handshake(&key(9), Identity::Link, &ks9),
        Err("dialer refused challenge")
    );
    for need in [Need::Migration, Need::Admin] {
        assert!(permit(&ks, Some(&Identity::Link), need).is_ok());
        assert!(permit(&ks, None, need).is_err());
        assert!(permit(&ks, Some(&Identity::Client), need).is_err());
        assert!(permit(&ks, Some(&Identity::Node), need).is_ok());
        assert!(permit(&ks, Some(&Identity::Admin), need).is_ok());
    }
    // No client key: KV requests stay open.
    assert!(permit(&ks, None, Need::Client).is_ok());
}

#[test]
fn permissions_with_a_client_key_and_without_keys() {
    let ks = keys(Some(7), Some(9));
    assert!(permit(&ks, None, Need::Client).is_err());
    assert!(permit(&ks, Some(&Identity::Client), Need::Client).is_ok());
    assert!(permit(&ks, Some(&Identity::Admin), Need::Client).is_ok());
    assert!(permit(&ks, Some(&Identity::Client), Need::Admin).is_err());
    let open = Keys::default();
    for need in [
        Need::Paxos { gid: 1, from: 0 },
        Need::Migration,
        Need::Admin,
        Need::Client,
    ] {
        assert!(permit(&open, None, need).is_ok());
    }
}

/// The worked example of `wire/PROTOCOL.md` section 5.7 (computed there
/// with Python's `hmac` module, independently of this code).
#[test]
fn macs_match_the_protocol_documents_example() {
    let key = Key::from_bytes((0u8..32).collect()).unwrap();
    let nonce_c: [u8; 32] = std::array::from_fn(|i| i as u8);
    let nonce_s: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ks = Keys {
        cluster: Some(key.clone()),
        client: None,
    };
    let (dialer, hello) = Dialer::new(&key, Identity::Admin, nonce_c);
    let (acc, challenge) = Accepting::on_hello(&ks, &hello, nonce_s).unwrap();
    assert_eq!(
        hex(&challenge.mac),
        "9acb330e399ef3c82daba5becf0a173f28d62ca9742e34f024a21470aad4321a"
    );
    let proof = dialer.on_challenge(&challenge).unwrap();
    assert_eq!(
        hex(&proof.mac),
        "f545105cf8b46066acb0395c43cfad1eb31f0c8a9495354483994efbb1f38a61"
    );
    assert_eq!(acc.on_proof(&proof), Ok(Identity::Admin));
    let doc = include_str!("../../wire/PROTOCOL.md");
    assert!(
        doc.contains("9acb330e399ef3c82daba5becf0a173f28d62ca9742e34f024a21470aad4321a")
            && doc.contains("f545105cf8b46066acb0395c43cfad1eb31f0c8a9495354483994efbb1f38a61")
    );
}
