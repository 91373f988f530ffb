//! Helpers shared by the image tests (`tests/registry.rs`, `tests/kubernetes.rs`):
//! a test CA, Debian's real `docker-registry` started on 127.0.0.1 with a temporary
//! config, pushes through the registry HTTP API, and an HTTPS fixture server.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Reply, SeenRequest};

pub mod kube;
pub mod readme;

/// `sha256:<hex>` of some bytes.
pub fn sha256(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The server certificate and key, for [`tls_fixture`].
    pub leaf: common::Leaf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let ca = common::TestCa::new();
        let leaf = ca.leaf((2020, 1, 1), (2045, 1, 1));
        TestCa {
            ca_pem: ca.pem.clone(),
            cert_pem: leaf.cert_pem.clone(),
            key_pem: leaf.key_pem.clone(),
            leaf,
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `docker-registry` (distribution 2.8) running on 127.0.0.1.
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Registry {
    /// Starts the registry with filesystem storage in `storage`; `extra` is appended to
    /// the config (e.g. `auth:` and the `tls:` of `http:` written by the caller).
    pub fn start(
        dir: &Path,
        name: &str,
        storage: &Path,
        http_extra: &str,
        extra: &str,
    ) -> Registry {
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: sonde-test-secret\n{http_extra}{extra}",
                storage.display()
            );
            let config_path = dir.join(format!("{name}.yml"));
            std::fs::write(&config_path, config).unwrap();
            let log = dir.join(format!("{name}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("docker-registry (Debian package docker-registry) must be installed; scripts/test.sh installs it");
            let mut registry = Registry {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = registry.child.try_wait() {
                    break;
                }
                let listening = std::fs::read_to_string(&registry.log)
                    .unwrap_or_default()
                    .contains("listening on");
                if listening && TcpStream::connect(registry.addr).is_ok() {
                    return registry;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = registry.child.kill();
            let _ = registry.child.wait();
            eprintln!(
                "docker-registry did not start on port {port}; log: {}",
                std::fs::read_to_string(&registry.log).unwrap_or_default()
            );
        }
        panic!("docker-registry did not start");
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Uploads a blob (POST, then a monolithic PUT) and returns its digest.
    pub fn upload_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = common::request(
            self.addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(r.status, 202, "start upload: {}", r.text());
        let location = r.header("location").expect("upload location").to_string();
        let path = match location.find("/v2/") {
            Some(i) => location[i..].to_string(),
            None => panic!("odd location {location}"),
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = common::request(
            self.addr,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "finish upload: {}", r.text());
        digest
    }

    /// Puts a manifest under a tag or digest and returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &str,
    ) -> String {
        let r = common::request(
            self.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body.as_bytes(),
        );
        assert_eq!(
            r.status,
            201,
            "put manifest {repo}:{reference}: {}",
            r.text()
        );
        let digest = sha256(body.as_bytes());
        if let Some(d) = r.header("docker-content-digest") {
            assert_eq!(d, digest);
        }
        digest
    }

    /// Uploads the blobs of a one-layer image and returns its Docker v2 or OCI
    /// manifest: (media type, body).
    pub fn image_manifest(&self, repo: &str, oci: bool, seed: &str) -> (&'static str, String) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"seed":"{seed}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let layer = format!("layer of {seed}").into_bytes();
        let config_digest = self.upload_blob(repo, config.as_bytes());
        let layer_digest = self.upload_blob(repo, &layer);
        let (manifest_type, config_type, layer_type) = if oci {
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        };
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"{config_type}","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"{layer_type}","size":{},"digest":"{layer_digest}"}}]}}"#,
            config.len(),
            layer.len()
        );
        (manifest_type, manifest)
    }

    /// Pushes a one-layer image under `tag`; returns its manifest digest.
    pub fn push_image(&self, repo: &str, tag: &str, oci: bool, seed: &str) -> String {
        let (media_type, manifest) = self.image_manifest(repo, oci, seed);
        self.put_manifest(repo, tag, media_type, &manifest)
    }

    /// Pushes two OCI images by digest only (no tag) and an OCI index over them under
    /// `tag`: the tag names nothing but an index.
    pub fn push_index(&self, repo: &str, tag: &str) -> String {
        let mut children = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (media_type, manifest) = self.image_manifest(repo, true, &format!("{repo}-{arch}"));
            let digest = sha256(manifest.as_bytes());
            self.put_manifest(repo, &digest, media_type, &manifest);
            children.push(format!(
                r#"{{"mediaType":"{media_type}","size":{},"digest":"{digest}","platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                manifest.len()
            ));
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            children.join(",")
        );
        self.put_manifest(repo, tag, "application/vnd.oci.image.index.v1+json", &index)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes images with `push` into a plain registry, then serves the same storage over
/// TLS (certificate of `ca`) with htpasswd Basic auth for `user`/`password`.
pub fn secure_registry(
    dir: &Path,
    ca: &TestCa,
    user: &str,
    password: &str,
    push: impl FnOnce(&Registry),
) -> Registry {
    let storage = dir.join("storage");
    {
        let plain = Registry::start(dir, "plain", &storage, "", "");
        push(&plain);
    }
    let tls = dir.join("registry-tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("cert.pem"), &ca.cert_pem).unwrap();
    std::fs::write(tls.join("key.pem"), &ca.key_pem).unwrap();
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{}\n", htpasswd_line(user, password))).unwrap();
    Registry::start(
        dir,
        "secure",
        &storage,
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.join("cert.pem").display(),
            tls.join("key.pem").display()
        ),
        &format!(
            "auth:\n  htpasswd:\n    realm: sonde-test\n    path: {}\n",
            htpasswd.display()
        ),
    )
}

/// A bcrypt htpasswd line made by apache2-utils' `htpasswd -B`.
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("htpasswd (Debian package apache2-utils) must be installed; scripts/test.sh installs it");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `~/.docker/config.json` content with one `auths` entry.
pub fn docker_config(host: &str, user: &str, password: &str) -> String {
    let auth = base64(format!("{user}:{password}").as_bytes());
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

pub use crate::common::base64;

/// An HTTPS fixture server presenting the certificate of `ca`.
pub fn tls_fixture(
    ca: &TestCa,
    route: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static,
) -> common::Fixture {
    common::Fixture::start_tls(&ca.leaf, route)
}

/// A JSON reply.
pub fn json(status: u16, body: &str) -> Reply {
    Reply::Http {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}
