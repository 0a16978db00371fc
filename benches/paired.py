#!/usr/bin/env python3
"""Paired runs of builds of the benchmark program: variants run alternately, round after round
(the order rotates each round), so that the noise of a shared VM (other compiles, a busy host)
falls on all of them alike. Prints, per test, each variant's median and, against the first
variant, the median of the per-round ratios and in how many rounds the variant was ahead.

Usage:
  python3 benches/paired.py [--rounds N] [--only a,b] [--delta S] [--copy] \\
      -- NAME=BINARY[:ENV=VALUE,...] NAME=BINARY ...
e.g.
  cp target/release/examples/mp_benchmarks /tmp/new
  python3 benches/paired.py --rounds 10 --only process_start_join_fork \\
      -- old=/tmp/old new=/tmp/new new-opt=/tmp/new:PROCVISOR_FORK_INHERIT_CODE=1

--copy runs a fresh copy of each binary (made once, in a temporary directory), so that each sits
in the page cache as a copied file does (large folios), not as the linker wrote it: see
docs/perf.md. Each run is `BINARY --json --only ... --delta S`; the JSON lines are the ones
compare.py reads. --json FILE writes every run's rows and the summary.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile


def cpu_times():
    """(busy, steal) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def run(binary, env, only, delta):
    cmd = [binary, "--json", "--delta", str(delta)]
    if only:
        cmd += ["--only", only]
    busy0, steal0 = cpu_times()
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env))
    busy1, steal1 = cpu_times()
    if out.returncode != 0:
        sys.stderr.write(f"{cmd} exited {out.returncode}\n{out.stderr[-2000:]}\n")
    rows = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            rows[obj["test"]] = obj["per_sec"]
    return rows, busy1 - busy0, steal1 - steal0


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    i = argv.index("--")
    opts, specs = argv[:i], argv[i + 1:]

    def opt(name, default):
        return opts[opts.index(name) + 1] if name in opts else default

    rounds = int(opt("--rounds", "8"))
    only = opt("--only", None)
    delta = float(opt("--delta", "1.0"))
    json_out = opt("--json", None)
    tmp = tempfile.mkdtemp(prefix="paired-") if "--copy" in opts else None
    variants = []
    for spec in specs:
        name, rest = spec.split("=", 1)
        binary, _, envs = rest.partition(":")
        env = dict(e.split("=", 1) for e in envs.split(",") if e)
        if tmp:
            copy = os.path.join(tmp, name)
            shutil.copy2(binary, copy)
            binary = copy
        variants.append((name, binary, env))
    results = {name: [] for name, _, _ in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for name, binary, env in order:
            rows, busy, steal = run(binary, env, only, delta)
            results[name].append(rows)
            shown = " ".join(f"{k}={v:.0f}" for k, v in rows.items())
            print(f"round {r + 1} {name}: {shown} (cpu busy {busy}, steal {steal} jiffies)",
                  file=sys.stderr, flush=True)
    if tmp:
        shutil.rmtree(tmp)
    tests = []
    for runs in results.values():
        for rows in runs:
            tests += [t for t in rows if t not in tests]
    base = variants[0][0]
    summary = {}
    print(f"| test | " + " | ".join(f"{n} median /s" for n, _, _ in variants)
          + " | " + " | ".join(f"{n} ÷ {base} (ahead)" for n, _, _ in variants[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(variants) - 1))
    for t in tests:
        medians, ratios = [], []
        for name, _, _ in variants:
            vals = [rows[t] for rows in results[name] if t in rows]
            medians.append(statistics.median(vals) if vals else None)
            summary.setdefault(t, {})[name] = {"median": medians[-1], "runs": vals}
        for name, _, _ in variants[1:]:
            pairs = [(rows[t], b[t]) for rows, b in zip(results[name], results[base])
                     if t in rows and t in b]
            rs = [a / b for a, b in pairs if b]
            ahead = sum(1 for x in rs if x > 1)
            ratios.append(f"{statistics.median(rs):.3f} ({ahead}/{len(rs)})" if rs else "-")
            summary[t][name]["ratio_to_" + base] = statistics.median(rs) if rs else None
        cells = [f"{m:.1f}" if m is not None else "-" for m in medians] + ratios
        print(f"| {t} | " + " | ".join(cells) + " |")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"results": results, "summary": summary}, f)


if __name__ == "__main__":
    main()
