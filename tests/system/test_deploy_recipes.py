"""What every recipe (compose, Kubernetes, systemd, the Dockerfile) must get right for
leasegate: no shipped secret, one media worker process per GPU with time to finish its task,
and one redbeat beat that finds its cron file.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy import (
    Process,
    check_celery,
    docker_processes,
    k8s_objects,
    max_deadline,
    processes,
)


def test_no_recipe_ships_a_usable_secret() -> None:
    for process in processes():
        secret = process.env.get("LEASEGATE_SECRET")
        assert secret is None or secret == "" or secret.startswith("${"), \
            f"{process.where}: LEASEGATE_SECRET must come from outside the recipe"
    assert "LEASEGATE_SECRET" not in docker_processes()[0].env


def celery_processes(subcommand: str) -> list[tuple[Process, dict[str, list[str]]]]:
    found = []
    for process in processes():
        if process.argv and Path(process.argv[0]).name == "celery":
            path, options = check_celery(process.argv[1:], process.where)
            if path == subcommand:
                found.append((process, options))
    return found


def test_workers_one_process_per_gpu_with_the_secret_and_time_to_finish() -> None:
    workers = celery_processes("worker")
    media = [(p, o) for p, o in workers if "media" in ",".join(o.get("queues", [])).split(",")
             and "Dockerfile" not in p.where]
    assert len(media) == 3  # compose, Kubernetes, systemd
    for process, options in media:
        assert options.get("concurrency") == ["1"], f"{process.where}: media workers use -c 1"
        assert options.get("pool", ["prefork"]) == ["prefork"], f"{process.where}: prefork"
        assert process.grace is not None and process.grace > max_deadline(process.env), \
            f"{process.where}: a stop must wait longer than LEASEGATE_MAX_DEADLINE"
    for process, _ in workers:
        if "Dockerfile" not in process.where:  # the image's default gets it at run time
            assert "LEASEGATE_SECRET" in process.env, f"{process.where}: workers need it"


def test_beat_is_redbeat_once_and_finds_its_cron_file() -> None:
    beats = celery_processes("beat")
    assert len(beats) == 3
    for process, options in beats:
        assert options.get("scheduler") == ["redbeat.RedBeatScheduler"], process.where
        cron = process.env.get("LEASEGATE_CRON_FILE")
        assert cron, f"{process.where}: beat needs LEASEGATE_CRON_FILE"
        if process.mounts:  # compose and Kubernetes mount it; systemd reads /etc/leasegate
            assert any(cron.startswith(path) for path in process.mounts), process.where
    deployment = k8s_objects()[("Deployment", "leasegate-beat")]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
