#!/usr/bin/env python3
"""Runs the steps of action.yml the way GitHub's runner runs a composite action, without GitHub.

Each scenario is a fresh working directory holding a small user project (its own BPF objects,
the uprobe target they name and a spec, copied from kgate's test objects). The runner's part is
played here: inputs with their defaults, ${{ inputs.X }}, ${{ github.action_path }} and
${{ steps.ID.outputs.X }} substituted, a `shell: bash` step run as `bash --noprofile --norc -eo
pipefail FILE`, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY and GITHUB_WORKSPACE as files and
directories, a failed step skipping the later steps that have no `if: always()`, and the action's
outputs read back. The one `uses:` step (upload-artifact) is checked, not run: it must be pinned
to a full commit SHA, run on every outcome, and find the files it would upload.

Usage: run_action.py SOURCE_ROOT KGATE OBJECTS_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def fail(msg):
    print("run_action: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def substitute(text, ctx):
    def one(m):
        expr = m.group(1)
        if expr == "github.action_path":
            return ctx["action_path"]
        if expr.startswith("inputs."):
            return ctx["inputs"][expr[len("inputs."):]]
        parts = expr.split(".")
        if len(parts) == 4 and parts[0] == "steps" and parts[2] == "outputs":
            return ctx["steps"].get(parts[1], {}).get(parts[3], "")
        fail("an expression this runner does not know: " + expr)
    return EXPR.sub(one, str(text))


def read_outputs(path):
    out = {}
    with open(path) as f:
        for line in f.read().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def run_action(root, action, inputs, work, path_dirs):
    ctx = {"action_path": root, "inputs": {}, "steps": {}}
    for name, spec in action["inputs"].items():
        ctx["inputs"][name] = str(spec.get("default", ""))
    for name, value in inputs.items():
        check(name in action["inputs"], "the action has no input '%s'" % name)
        ctx["inputs"][name] = value
    summary = os.path.join(work, "..", "step-summary.md")
    failed = False
    ran = []
    for i, step in enumerate(action["runs"]["steps"]):
        cond = step.get("if", "success()")
        if failed and "always()" not in cond:
            ran.append((step.get("id", str(i)), "skipped"))
            continue
        if "uses" in step:
            # Not run here; what it would upload must be there.
            path = os.path.join(work, substitute(step["with"]["path"], ctx))
            has_files = os.path.isdir(path) and any(files for _, _, files in os.walk(path))
            if not has_files and step["with"].get("if-no-files-found") == "error":
                failed = True
                ran.append((step.get("id", str(i)), "failed: no files at " + path))
            else:
                ran.append((step.get("id", str(i)), "uploaded " + path))
            continue
        check(step.get("shell") == "bash", "step %d: shell must be bash" % i)
        script = os.path.join(work, "..", "step-%d.sh" % i)
        with open(script, "w") as f:
            f.write(substitute(step["run"], ctx) + "\n")
        output = os.path.join(work, "..", "output-%d" % i)
        open(output, "w").close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_", "KGATE"))}
        env.update({k: substitute(v, ctx) for k, v in step.get("env", {}).items()})
        env.update({"GITHUB_OUTPUT": output, "GITHUB_STEP_SUMMARY": summary, "GITHUB_WORKSPACE": work,
                    "RUNNER_TEMP": os.path.join(work, "..", "runner-temp"), "GITHUB_ACTIONS": "true",
                    "PATH": os.pathsep.join(path_dirs + [env.get("PATH", "/usr/bin:/bin")])})
        os.makedirs(env["RUNNER_TEMP"], exist_ok=True)
        p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", script], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        print("--- step %s (%s): exit %d\n%s" % (step.get("id", i), step.get("name", ""), p.returncode, p.stdout))
        ctx["steps"][step.get("id", str(i))] = read_outputs(output)
        ran.append((step.get("id", str(i)), "exit %d" % p.returncode))
        if p.returncode != 0:
            failed = True
    outputs = {name: substitute(spec["value"], ctx) for name, spec in action["outputs"].items()}
    text = open(summary).read() if os.path.exists(summary) else ""
    return failed, outputs, text, ran


def user_project(objects, work):
    """A user's repository: its objects, the binary its uprobe targets, and two specs."""
    os.makedirs(os.path.join(work, "ebpf"))
    for f in ["gate.x86_64.bpf.o", "gate.arm64.bpf.o", "target.x86_64", "target.arm64"]:
        shutil.copy(os.path.join(objects, f), os.path.join(work, "ebpf", f))
    shutil.copy(os.path.join(objects, "good.json"), os.path.join(work, "ebpf", "ebpf-gate.json"))
    shutil.copy(os.path.join(objects, "red.json"), os.path.join(work, "ebpf", "red.json"))


def main():
    root, kgate, objects = sys.argv[1:4]
    if not shutil.which("qemu-system-x86_64") or not shutil.which("qemu-system-aarch64"):
        if os.environ.get("KGATE_REQUIRE_VM") == "1":
            fail("QEMU for x86_64 and aarch64 is needed (scripts/setup.sh --all)")
        sys.exit(77)
    with open(os.path.join(root, "action.yml")) as f:
        action = yaml.safe_load(f)
    check(action["runs"]["using"] == "composite", "a composite action")
    for step in action["runs"]["steps"]:
        if "uses" in step:
            ref = step["uses"].split("@", 1)
            check(len(ref) == 2 and re.fullmatch("[0-9a-f]{40}", ref[1]),
                  "every action it uses is pinned to a full commit SHA: " + step["uses"])
            check("always()" in step.get("if", ""), "receipts are uploaded on every outcome: " + step["uses"])
    path_dirs = [os.path.dirname(os.path.abspath(kgate))]
    base = tempfile.mkdtemp(prefix="kgate-action.")
    try:
        def scenario(name, inputs):
            work = os.path.join(base, name, "workspace")
            os.makedirs(work)
            user_project(objects, work)
            return (work,) + run_action(root, action, inputs, work, path_dirs)

        # 1. A passing spec on an x86 and an arm64 entry, two VMs at once.
        work, failed, out, summary, ran = scenario("pass", {
            "spec": "ebpf/ebpf-gate.json", "entries": "debian-6.1,debian-6.1-arm64", "jobs": "2",
            "install": "none", "out": "gate-out", "artifact": "receipts-pass"})
        print("pass: ", ran, out)
        check(not failed, "a passing spec fails the action: %s" % ran)
        check(out["verdict"] == "pass" and out["exit-code"] == "0", "pass outputs: %s" % out)
        check(out["passed"] == "2" and out["total"] == "2", "pass counts: %s" % out)
        s = json.load(open(out["summary"]))
        check(s["verdict"] == "pass" and [e["name"] for e in s["entries"]] == ["debian-6.1", "debian-6.1-arm64"],
              "the summary: %s" % s["entries"])
        check(out["summary"].startswith(os.path.join(work, "gate-out")), "the summary is in the workspace's out")
        check("kgate matrix: pass, 2 of 2 entries passed" in summary, "step summary: " + summary)
        check("| `gate/tp_getpid` | pass, " in summary, "the program table in the step summary")
        check(ran[-1][1].startswith("uploaded"), "receipts uploaded: %s" % ran)

        # 2. A failing spec on an integrity entry (the lockdown input selects it): the gate step
        # fails with kgate's code, the outputs say so, the receipts are uploaded all the same.
        work, failed, out, summary, ran = scenario("fail", {
            "spec": "ebpf/red.json", "entries": "debian-6.1*", "lockdown": "integrity", "shard": "1/2",
            "install": "none", "out": "gate-out"})
        print("fail: ", ran, out)
        check(failed, "a failing spec passes the action")
        check(out["verdict"] == "fail" and out["exit-code"] == "1", "fail outputs: %s" % out)
        check(out["passed"] == "0" and out["total"] == "1", "fail counts: %s" % out)
        s = json.load(open(out["summary"]))
        check([e["name"] for e in s["entries"]] == ["debian-6.1-integrity"], "lockdown and shard select: %s"
              % s["entries"])
        check("**FAIL**" in summary, "step summary of a failure: " + summary)
        check(ran[-1][1].startswith("uploaded"), "receipts uploaded on a failure too: %s" % ran)

        # 3. An install mode that does not exist: nothing gates, and the upload finds nothing, which
        # fails too: no result is never a pass.
        work, failed, out, summary, ran = scenario("bad-install", {"install": "from-the-moon"})
        print("bad install: ", ran, out)
        check(failed and ran[1][1] == "skipped", "the gate is skipped after a failed install: %s" % ran)
        check(ran[2][1].startswith("failed: no files"), "the upload of nothing fails: %s" % ran)
        check(out["verdict"] == "", "no verdict: %s" % out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("run_action: 3 scenarios as the runner runs them")


if __name__ == "__main__":
    main()
