"""The docker recipes: compose.yaml scales workers and references files that exist; the
Dockerfile builds and installs the wheel of this repository, as a user other than root.
"""

from __future__ import annotations

import re
import shlex

from tests.support.deploy import DEPLOY, ROOT, compose, dockerfile


def test_compose_scales_workers_and_references_real_files() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N
    redis_cmd = " ".join(services["redis"]["command"])
    assert "redis.conf" in redis_cmd
    for name, svc in services.items():
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, f"compose.yaml {name}: depends on {dependency}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose.yaml {name}: {source} missing"
            else:
                assert source in compose()["volumes"], f"compose.yaml {name}: volume {source}"
        if "build" in svc:
            build = DEPLOY / svc["build"]["context"]
            assert (build / svc["build"]["dockerfile"]).is_file()


def test_dockerfile_builds_and_installs_the_wheel_of_this_repository() -> None:
    instructions = dockerfile()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"pip wheel [^&]*--no-deps [^&]*\s\.(\s|$)", runs)
    # the wheel with its beat extra (redbeat), found by glob: any version
    assert re.search(r'pip install "\$\(ls /wheels/leasegate-\*\.whl\)\[beat\]"', runs)
    copied = {shlex.split(rest)[0] for word, rest in instructions
              if word == "COPY" and not rest.startswith("--from")}
    # setup.py's package roots and what its build reads: a root left out builds a wheel
    # without that layer
    roots = re.search(r"ROOTS = \(([^)]*)\)", (ROOT / "setup.py").read_text())
    assert roots
    missing = {r.strip(' "') for r in roots[1].split(",") if r.strip()} - copied
    assert not missing, f"Dockerfile does not COPY the package roots {missing}"
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile COPY {source}: missing"
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
