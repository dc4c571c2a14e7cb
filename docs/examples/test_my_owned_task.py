"""My owned task against a real Redis and a real worker, with leasegate's pytest fixtures."""

from my_app import app, caption


def test_a_live_run_gets_its_result(leasegate_client, leasegate_worker, leasegate_verdicts):
    leasegate_worker(app)
    run = leasegate_client.start_run("chat:alice", "caption my picture")
    callback_id = run.submit("caption", text="a fox")

    entry = leasegate_verdicts.assert_delivered(callback_id)
    assert entry.payload == {"caption": "A FOX"}


def test_the_late_result_of_an_expired_run_is_quarantined(
        leasegate_client, leasegate_worker, leasegate_lease_control, leasegate_verdicts):
    leasegate_worker(app)
    run = leasegate_client.start_run("chat:alice", "caption my picture")
    # the run's lease runs out while the worker captions: its result comes back late
    leasegate_lease_control.after_work(caption, lambda: leasegate_lease_control.expire(run))
    callback_id = run.submit("caption", text="a fox")

    letter = leasegate_verdicts.assert_quarantined(callback_id, reason="lease_expired")
    assert letter.kind == "result" and letter.payload == {"caption": "A FOX"}
    assert [entry.kind for entry in run.inbox.entries()] == ["prompt"]  # nothing delivered


def test_a_superseded_runs_result_goes_to_the_dead_letters(
        leasegate_client, leasegate_worker, leasegate_lease_control, leasegate_verdicts):
    leasegate_worker(app)
    run = leasegate_client.start_run("chat:alice", "caption my picture")
    newer = []  # a new chat turn starts while the worker captions
    leasegate_lease_control.after_work(
        caption, lambda: newer.append(leasegate_lease_control.supersede(run)))
    callback_id = run.submit("caption", text="a fox")

    letter = leasegate_verdicts.assert_quarantined(callback_id, reason="superseded")
    assert letter.owner_run_id == newer[0].run_id
    assert [entry.kind for entry in newer[0].inbox.entries()] == ["prompt"]  # not the new run's
