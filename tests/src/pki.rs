//! Throwaway certificates for the TLS tests (etcd over https with client
//! certificates): a CA, a server certificate for given IP addresses and a
//! client certificate it signed, plus a second, unrelated CA (a client
//! that trusts it must refuse the server). PEM files in a directory of
//! their own, removed on drop.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use crate::unique;

/// The PEM files; every path is inside `dir`.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed `server_cert` and `client_cert`.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
}

impl Pki {
    /// A CA, a server certificate whose SANs are `server_ips` and a client
    /// certificate with common name `client_cn`, written to a new
    /// directory under the system's temp dir.
    pub fn new(server_ips: &[String], client_cn: &str) -> Self {
        let dir = std::env::temp_dir().join(unique("pki"));
        std::fs::create_dir(&dir).expect("create the PKI directory");
        // Built first, so a panic below still removes the directory.
        let pki = Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
            dir,
        };
        let (ca, ca_key) = ca("redirector test CA");
        write(&pki.ca, &ca.pem());
        write(&pki.other_ca, &self::ca("an unrelated CA").0.pem());

        let mut server = CertificateParams::new(server_ips.to_vec()).expect("server SANs");
        server.distinguished_name.push(DnType::CommonName, "etcd");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = server.signed_by(&key, &ca, &ca_key).expect("server cert");
        write(&pki.server_cert, &cert.pem());
        write(&pki.server_key, &key.serialize_pem());

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client
            .distinguished_name
            .push(DnType::CommonName, client_cn);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("client key");
        let cert = client.signed_by(&key, &ca, &ca_key).expect("client cert");
        write(&pki.client_cert, &cert.pem());
        write(&pki.client_key, &key.serialize_pem());
        pki
    }
}

/// A self-signed CA named `cn`, and its key.
fn ca(cn: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA cert");
    (cert, key)
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
