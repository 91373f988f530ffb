#!/usr/bin/env python3
"""sonde beside its peers, in one run on this machine: CPU per probe against Debian's
blackbox_exporter (driven through its /probe, as Prometheus drives it), scrape latency
against nginx serving the same bytes, idle RSS, start-up time and binary size.

Under each CPU-per-probe row, the floor: bench/floor.rs doing only the request (connect,
TLS with sonde's libraries, GET, read, close) at the same rate, one at a time as sonde's
threads do and ten at once on one poller, so the table says how much of a probe's CPU
is sonde's and how much any prober would pay on this machine.

Every figure is measured here and now, against a peer started in the same run, so the
ratios hold on whatever machine runs this. Times are noisy on a shared machine: this is a
report with goals (PASS/FAIL), not a test gate. Run it through bench/run.sh, which builds
sonde and installs what is missing; `--quick` runs every measurement briefly (CI uses it
so the benchmark cannot rot).
"""

import argparse
import http.client
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU of a process (and its threads) so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_field(pid, name):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def rss_mb(pid):
    return status_field(pid, "VmRSS") / 1024


def get(port, path, timeout=10, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_http(port, path, seconds, proc=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            status, _ = get(port, path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer 200 within {seconds}s")


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Processes:
    """Starts processes and stops every one of them at the end, whatever happens."""

    def __init__(self, work):
        self.work = work
        self.started = []

    def start(self, name, argv, **kwargs):
        log = open(self.work / f"{name}.log", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kwargs)
        self.started.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        for proc in self.started:
            self.stop(proc)


def make_certificates(work):
    """A CA (ca.crt, the clients' trust) and a P-256 server certificate it signed for
    127.0.0.1 (tls.crt, tls.key): the chain a real site presents, which every client
    verifies in full on each handshake."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=work)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *curve, "-days", "30", "-subj", "/CN=sonde bench CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-new", *curve, "-subj", "/CN=127.0.0.1", "-keyout", "tls.key", "-out", "tls.csr")
    (work / "san.ext").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", "san.ext", "-out", "tls.crt")


def start_nginx(procs, work):
    """nginx on 127.0.0.1 serving a small page over http and https (a CA-signed
    certificate)."""
    root = work / "www"
    root.mkdir()
    (root / "index.html").write_text("<html><body>" + "sonde bench " * 40 + "</body></html>\n")
    make_certificates(work)
    http_port, https_port = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/tmp-body;
  proxy_temp_path {work}/tmp-proxy;
  fastcgi_temp_path {work}/tmp-fastcgi;
  uwsgi_temp_path {work}/tmp-uwsgi;
  scgi_temp_path {work}/tmp-scgi;
  keepalive_requests 100000;
  types {{ text/plain txt; text/html html; }}
  server {{
    listen 127.0.0.1:{http_port};
    listen 127.0.0.1:{https_port} ssl;
    # nginx 1.22 (Debian 12) offers only up to TLS 1.2 unless told; sites speak 1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {work}/tls.crt;
    ssl_certificate_key {work}/tls.key;
    root {root};
  }}
}}
""")
    proc = procs.start("nginx", ["nginx", "-c", str(conf), "-p", str(work)])
    wait_http(http_port, "/index.html", 10, proc)
    return http_port, https_port, root


def start_sonde(procs, sonde, work, name, config_text):
    config = work / f"{name}.yml"
    config.write_text(config_text)
    port = free_port()
    proc = procs.start(name, [sonde, "--config.file", str(config),
                              "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"])
    wait_http(port, "/-/healthy", 20, proc)
    return proc, port


def sonde_cpu_per_probe(procs, sonde, work, urls, seconds, tls_ca=None):
    """CPU of sonde per probe: one check probing every URL each second."""
    tls = f"    tls: {{ca_file: {tls_ca}}}\n" if tls_ca else ""
    listed = "".join(f"      - {u}\n" for u in urls)
    config = f"checks:\n  - name: bench\n    kind: http\n    interval: 1s\n    timeout: 1s\n{tls}    urls:\n{listed}"
    proc, port = start_sonde(procs, sonde, work, "sonde-cpu", config)
    wait_http(port, "/-/ready", 30, proc)
    time.sleep(1.5)
    _, before_text = get(port, "/metrics")
    cpu_before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    cpu_after = cpu_seconds(proc.pid)
    _, after_text = get(port, "/metrics")
    probes = (metric_sum(after_text.decode(), "sonde_http_probes_total")
              - metric_sum(before_text.decode(), "sonde_http_probes_total"))
    rss = rss_mb(proc.pid)
    threads = status_field(proc.pid, "Threads")
    procs.stop(proc)
    if probes <= 0:
        raise RuntimeError("sonde made no probe")
    return (cpu_after - cpu_before) / probes, probes, rss, threads


def floor_cpu_per_request(floor, port, rate, count, ca=None, together=1):
    """CPU per request of bench/floor.rs: connect, (TLS handshake,) GET, read, close at
    the same rate as sonde probes, with nothing else around it."""
    argv = [floor, "--port", str(port), "--rate", str(rate), "--count", str(count),
            "--together", str(together)] + (["--ca", str(ca)] if ca else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=count / rate * 3 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"floor failed: {out.stderr.strip()}")
    fields = out.stdout.split()
    return float(fields[fields.index("cpu_per_request_us") + 1]) / 1e6


def blackbox_cpu_per_probe(procs, work, urls, seconds, module):
    """CPU of blackbox_exporter per probe, driven through /probe at the same rate sonde
    probes (every URL once a second), by as many client threads as needed."""
    port = free_port()
    config = work / "blackbox.yml"
    config.write_text(f"""modules:
  http_2xx:
    prober: http
    timeout: 1s
  https_2xx:
    prober: http
    timeout: 1s
    http:
      tls_config:
        ca_file: {work}/ca.crt
""")
    proc = procs.start("blackbox", ["prometheus-blackbox-exporter", f"--config.file={config}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    wait_http(port, "/-/healthy", 20, proc)
    done = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def drive(my_urls):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            started = time.monotonic()
            for url in my_urls:
                if stop.is_set():
                    break
                query = urllib.parse.urlencode({"module": module, "target": url})
                try:
                    conn.request("GET", "/probe?" + query)
                    conn.getresponse().read()
                    with lock:
                        done[0] += 1
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            # Each URL once a second, like sonde's interval.
            stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
        conn.close()

    workers = 8
    threads = [threading.Thread(target=drive, args=(urls[i::workers],)) for i in range(workers)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    with lock:
        probes_before = done[0]
    cpu_before = cpu_seconds(proc.pid)
    time.sleep(seconds)
    cpu_after = cpu_seconds(proc.pid)
    with lock:
        probes = done[0] - probes_before
    rss = rss_mb(proc.pid)
    stop.set()
    for t in threads:
        t.join()
    procs.stop(proc)
    if probes <= 0:
        raise RuntimeError("blackbox made no probe")
    return (cpu_after - cpu_before) / probes, probes, rss


def latency_p50(port, path, count):
    samples = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path)
        body = conn.getresponse().read()
        samples.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(samples), len(body)


def scrape_vs_nginx(procs, sonde, work, http_port, root, urls_count, scrapes):
    """p50 of GET /metrics from sonde against nginx serving the same bytes."""
    urls = "".join(f"      - http://127.0.0.1:{http_port}/index.html?u={i}\n" for i in range(urls_count))
    config = f"checks:\n  - name: scrape\n    kind: http\n    interval: 5m\n    timeout: 1m\n    urls:\n{urls}"
    proc, port = start_sonde(procs, sonde, work, "sonde-scrape", config)
    wait_http(port, "/-/ready", 120, proc)
    _, body = get(port, "/metrics")
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    (root / "metrics.txt").write_bytes(body)
    sonde_p50, size = latency_p50(port, "/metrics", scrapes)
    nginx_p50, _ = latency_p50(http_port, "/metrics.txt", scrapes)
    rss = rss_mb(proc.pid)
    procs.stop(proc)
    return series, size, sonde_p50, nginx_p50, rss


def spread_run(procs, sonde, work, http_port, urls_count, interval, minutes):
    """One check of many URLs every `interval` seconds for `minutes`: how many probes
    started within 1 s of their place in the interval (sonde's lateness histogram),
    peak RSS and threads."""
    urls = "".join(f"      - http://127.0.0.1:{http_port}/index.html?s={i}\n" for i in range(urls_count))
    config = (f"checks:\n  - name: spread\n    kind: http\n    interval: {interval}s\n"
              f"    timeout: 5s\n    histogram: false\n    urls:\n{urls}")
    proc, port = start_sonde(procs, sonde, work, "sonde-spread", config)
    wait_http(port, "/-/ready", 120, proc)
    peak_rss, peak_threads = 0.0, 0
    until = time.monotonic() + minutes * 60
    while time.monotonic() < until:
        time.sleep(1)
        peak_rss = max(peak_rss, rss_mb(proc.pid))
        peak_threads = max(peak_threads, status_field(proc.pid, "Threads"))
    _, body = get(port, "/metrics")
    text = body.decode()
    within = metric_sum(text, 'sonde_http_probe_lateness_seconds_bucket{check="spread",le="1"}')
    total = metric_sum(text, "sonde_http_probe_lateness_seconds_count")
    probes = metric_sum(text, "sonde_http_probes_total")
    procs.stop(proc)
    return within / max(total, 1), total, probes, peak_rss, peak_threads


def startup(procs, argv, work, runs, name="sonde"):
    """Exec to the first 200 on /metrics (argv gets the listen address appended), then the
    idle RSS and threads one second later."""
    times = []
    idle = None
    for i in range(runs):
        port = free_port()
        started = time.perf_counter()
        proc = procs.start(f"{name}-start-{i}", argv + [f"--web.listen-address=127.0.0.1:{port}"])
        while True:
            try:
                status, _ = get(port, "/metrics", timeout=1)
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > 10:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.0005)
        times.append(time.perf_counter() - started)
        if idle is None:
            time.sleep(1)
            idle = (rss_mb(proc.pid), status_field(proc.pid, "Threads"))
        procs.stop(proc)
    return statistics.median(times), idle


class Report:
    def __init__(self):
        self.rows = []

    def add(self, what, sonde, peer, ratio, goal, ok):
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((what, sonde, peer, ratio, goal, verdict))

    def print(self, machine):
        print(f"\n## sonde benchmark ({machine})\n")
        header = ("measure", "sonde", "peer", "ratio", "goal", "")
        widths = [max(len(str(r[i])) for r in self.rows + [header]) for i in range(6)]
        for row in [header, tuple("-" * w for w in widths)] + self.rows:
            print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def interleaved(measures, seconds):
    """Runs each measure twice for half of `seconds`, in the order A B C D D C B A, and
    returns each one's CPU per probe over both halves with its probe count and the
    extras of its last half. The machine drifts during a run (TIME_WAIT sockets pile up
    on the target, caches and clocks change); the mirrored order gives every measure
    the same share of early and late."""
    totals = {name: [0.0, 0, None] for name, _ in measures}
    for name, measure in measures + measures[::-1]:
        per_probe, probes, extra = measure(seconds / 2)
        totals[name][0] += per_probe * probes
        totals[name][1] += probes
        totals[name][2] = extra
    return {name: (cpu / max(n, 1), n, extra) for name, (cpu, n, extra) in totals.items()}


def cpu_rows(report, procs, args, work, scheme, port, urls, seconds, goal, ok):
    """CPU per probe of sonde and blackbox_exporter on `urls`, and the floor under them:
    bench/floor.rs doing only the request, one at a time as sonde's threads do, and ten
    at once on one poller (an event loop). Returns sonde's RSS and threads, and
    blackbox's RSS."""
    rate = len(urls)
    ca = work / "ca.crt" if scheme == "https" else None

    def sonde(secs):
        cpu, n, rss, threads = sonde_cpu_per_probe(procs, args.sonde, work, urls, secs, tls_ca=ca)
        return cpu, n, (rss, threads)

    def blackbox(secs):
        cpu, n, rss = blackbox_cpu_per_probe(procs, work, urls, secs, f"{scheme}_2xx")
        return cpu, n, rss

    def floor(together):
        def measure(secs):
            count = max(together, int(rate * secs) // together * together)
            return floor_cpu_per_request(args.floor, port, rate, count, ca, together), count, None
        return measure

    got = interleaved([("sonde", sonde), ("blackbox", blackbox), ("alone", floor(1)),
                       ("grouped", floor(10))], seconds)
    (s_cpu, s_n, s_extra), (b_cpu, b_n, b_rss) = got["sonde"], got["blackbox"]
    what = "http probe" if scheme == "http" else "https probe (TLS 1.3, full handshake)"
    report.add(f"CPU per {what}, {rate} URLs/s ({s_n:.0f} vs {b_n} probes)", f"{s_cpu * 1e6:.0f} µs",
               f"blackbox {b_cpu * 1e6:.0f} µs", f"1/{b_cpu / s_cpu:.1f}", goal, ok(s_cpu, b_cpu))
    # A quick run may spend less than a clock tick: no division by zero.
    alone, grouped = max(got["alone"][0], 1e-9), max(got["grouped"][0], 1e-9)
    s_cpu = max(s_cpu, 1e-9)
    report.add("  floor: bare client, same libraries, one request at a time", f"{alone * 1e6:.0f} µs",
               f"blackbox 1/{b_cpu / alone:.1f}", f"sonde {s_cpu / alone:.2f}× floor", "", None)
    report.add("  floor: bare client, 10 requests at once on one poller", f"{grouped * 1e6:.0f} µs",
               f"blackbox 1/{b_cpu / grouped:.1f}", "", "", None)
    return s_extra, b_rss


def machine_line():
    cpu = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    total = 0
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores ({cpu}), {total} GiB, Linux {os.uname().release}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sonde", required=True, help="the sonde binary to measure")
    parser.add_argument("--floor", required=True, help="bench/floor.rs, built (the floor under a probe)")
    parser.add_argument("--quick", action="store_true", help="short runs (CI)")
    args = parser.parse_args()
    quick = args.quick
    seconds = 3 if quick else 20
    urls_count = 50 if quick else 200
    work = pathlib.Path(tempfile.mkdtemp(prefix="sonde-bench-"))
    # nginx's workers run as an unprivileged user when started as root: they must be able
    # to read the pages.
    work.chmod(0o755)
    procs = Processes(work)
    report = Report()
    try:
        http_port, https_port, root = start_nginx(procs, work)
        http_urls = [f"http://127.0.0.1:{http_port}/index.html?u={i}" for i in range(urls_count)]
        https_urls = [f"https://127.0.0.1:{https_port}/index.html?u={i}" for i in range(urls_count)]

        (s_rss, s_threads), b_rss = cpu_rows(
            report, procs, args, work, "http", http_port, http_urls, seconds,
            "≤ 40 µs and ≤ 1/8", lambda s, b: s <= 40e-6 and s * 8 <= b)
        report.add("RSS while probing http", f"{s_rss:.1f} MB ({s_threads} threads)",
                   f"blackbox {b_rss:.1f} MB", f"{s_rss / b_rss:.2f}", "", None)
        cpu_rows(report, procs, args, work, "https", https_port, https_urls, seconds,
                 "≤ 1/4", lambda s, b: s * 4 <= b)

        # About 28 series per URL: 10k and 200k series.
        for target_series, scrapes in ([(10_000, 50)] if quick else [(10_000, 200), (200_000, 30)]):
            count = target_series // 28
            series, size, s_p50, n_p50, rss = scrape_vs_nginx(procs, args.sonde, work, http_port, root,
                                                             count, scrapes)
            goal = "≤ 1.5× nginx" if target_series < 100_000 else ""
            ok = (s_p50 <= 1.5 * n_p50) if target_series < 100_000 else None
            report.add(f"scrape p50, {series} series ({size / 1e6:.2f} MB), RSS {rss:.0f} MB",
                       f"{s_p50 * 1e3:.2f} ms", f"nginx {n_p50 * 1e3:.2f} ms",
                       f"{s_p50 / n_p50:.2f}×", goal, ok)

        urls_spread, interval, minutes = (1_000, 10, 0.5) if quick else (10_000, 30, 10)
        share, probes, _, peak_rss, peak_threads = spread_run(procs, args.sonde, work, http_port,
                                                              urls_spread, interval, minutes)
        report.add(f"{urls_spread} URLs every {interval} s for {minutes} min: probes started "
                   f"within 1 s of their place ({probes:.0f} probes)",
                   f"{share * 100:.2f} %", "", "", "≥ 99 %", share >= 0.99)
        report.add("  while spreading: peak RSS and threads", f"{peak_rss:.1f} MB, {peak_threads} threads",
                   "", "", "≤ 64 MB", peak_rss <= 64)

        runs = 3 if quick else 9
        start, (idle_rss, idle_threads) = startup(procs, [args.sonde, "--log.level=warn"], work, runs)
        (work / "blackbox-idle.yml").write_text("modules:\n  http_2xx:\n    prober: http\n")
        b_start, (b_idle_rss, b_threads) = startup(
            procs, ["prometheus-blackbox-exporter", f"--config.file={work / 'blackbox-idle.yml'}",
                    "--log.level=warn"], work, runs, name="blackbox")
        report.add("start to first /metrics 200 (median)", f"{start * 1e3:.1f} ms",
                   f"blackbox {b_start * 1e3:.1f} ms", f"{start / b_start:.2f}", "≤ 20 ms",
                   start <= 0.020)
        report.add("idle RSS, built-in default config", f"{idle_rss:.1f} MB ({idle_threads} threads)",
                   f"blackbox {b_idle_rss:.1f} MB ({b_threads} threads)",
                   f"{idle_rss / b_idle_rss:.2f}", "≤ 8 MB", idle_rss <= 8)
        size = os.path.getsize(args.sonde)
        report.add("binary size (as measured)", f"{size:,} B", "", "", "≤ 6.0 MB (6,000,000 B)",
                   size <= 6_000_000)
        report.print(machine_line())
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
