"""Have a person review each video: keep it once approved, regenerate it with their comment if rejected.

Each round creates a video, waits for it (deferred), then asks a reviewer to approve or reject it,
with an optional comment, in a human-in-the-loop task (Airflow 3.1+, the ``standard`` provider). An
approved video is kept; a rejected one starts the next round, whose prompt is the rejected
round's with the comment appended. A DAG has no loops, so the rounds are unrolled: ``MAX_ROUNDS``
of them. A round runs only when the one before was rejected: once a video is approved, the later
rounds are skipped and buy nothing. After ``MAX_ROUNDS`` rejections, ``rejected_every_round``
fails the run, nothing kept.

With a real key each round that runs buys one video (billed at your plan's price): from one to
``MAX_ROUNDS`` a run. Waits defer: a triggerer must run. ``file://`` is the disk of the worker that
runs the keep task.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import Param, TaskGroup, dag, get_current_context, task

from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator

try:
    from airflow.providers.standard.operators.hitl import HITLOperator
except ImportError as error:  # Airflow < 3.1, or a standard provider without them
    raise ImportError(
        "grok_video_review needs Airflow 3.1+ and the human-in-the-loop operators of "
        f"apache-airflow-providers-standard (tested with 1.21.0): {error}"
    ) from error

MAX_ROUNDS = 3  # videos bought at most per run: one per round that runs
APPROVE, REJECT = "Approve", "Reject"
GAVE_UP = "rejected_every_round"


def review_form() -> dict[str, Param]:
    """The review form's fields besides the options: a comment, used on Reject."""
    return {"comment": Param("", type="string", description="On Reject: appended to the next video's prompt")}


def pull(task_id: str, key: str = "return_value", field: str = "") -> str:
    """A template rendering the XCom ``key`` of ``task_id`` in this run (its ``field``, if given)."""
    item = f"[{field!r}]" if field else ""
    return f"{{{{ ti.xcom_pull(task_ids={task_id!r}, key={key!r}){item} }}}}"


def review_body(round_number: int, video_url: str, prompt: str) -> str:
    """What the reviewer reads (Markdown): the video's link, its prompt, what each answer does."""
    on_reject = (
        f"buys another video (round {round_number + 1} of {MAX_ROUNDS}), from this prompt with your "
        "comment appended."
        if round_number < MAX_ROUNDS
        else "ends the run as failed, nothing kept: this is the last round."
    )
    return (
        f"**Video:** [{video_url}]({video_url}) (the link expires 3 days after the video was made)\n\n"
        f"**Prompt:** {prompt}\n\n"
        f"**Approve** keeps this video. **Reject** {on_reject}"
    )


def revised_prompt(prompt: str, comment: str) -> str:
    """The next round's prompt: the rejected round's, with the reviewer's comment appended."""
    return " ".join(part for part in (prompt.strip(), comment.strip()) if part)


@task.branch
def decide(answer: dict[str, Any], purchase: dict[str, Any], round_number: int) -> str:
    """Follow the reviewer's answer: keep this round's video, or go to the next round (or give up)."""
    prompt = str(purchase["prompt"])  # what this round's video was made from
    [choice] = answer["chosen_options"]
    comment = str((answer.get("params_input") or {}).get("comment") or "")
    reviewer = (answer.get("responded_by_user") or {}).get("name", "?")
    if choice == APPROVE:
        print(f"Round {round_number}: approved by {reviewer}; keeping its video, no more rounds.")
        return f"round_{round_number}.keep"
    next_prompt = revised_prompt(prompt, comment)
    get_current_context()["ti"].xcom_push(key="next_prompt", value=next_prompt)
    print(f"Round {round_number}: rejected by {reviewer}, comment {comment!r}.")
    if round_number < MAX_ROUNDS:
        print(f"Round {round_number + 1} creates a video from the prompt: {next_prompt!r}")
        return f"round_{round_number + 1}.create"
    return GAVE_UP


@task(task_id=GAVE_UP)
def rejected_every_round(next_prompt: str) -> None:
    """Fail the run, saying why: every video was rejected, none kept."""
    raise AirflowFailException(
        f"All {MAX_ROUNDS} videos were rejected, so none was kept. To try again, trigger a new run "
        f"(each round buys one more video), e.g. with the prompt: {next_prompt!r}"
    )


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
    params={"prompt": Param("A paper boat drifts down a rainy city street, cinematic", type="string")},
)
def grok_video_review() -> None:
    prompt = "{{ params.prompt }}"  # round 1's; each later round's comes from the round before
    previous_decision = None
    for n in range(1, MAX_ROUNDS + 1):
        with TaskGroup(f"round_{n}"):
            create = GrokCreateVideoOperator(
                task_id="create",
                prompt=prompt,
                # A placeholder the real API cannot fetch: use an image URL of yours.
                image_url="https://example.com/images/boat.png",
                duration=10,
                ratio="16:9",
            )
            wait = GrokVideoSensor(
                task_id="wait",
                video_task_id=create.output,
                poke_interval=5,
                timeout=30 * 60,
                deferrable=True,
            )
            review = HITLOperator(
                task_id="review",
                subject=f"Grok video, round {n} of {MAX_ROUNDS}: approve or reject",
                body=review_body(
                    n, video_url=pull(wait.task_id), prompt=pull(create.task_id, "purchase", "prompt")
                ),
                options=[APPROVE, REJECT],
                params=review_form(),
            )
            # Airflow 3.1 adds the DAG's params (the prompt) to the form: keep only the form's own.
            for name in set(review.params) - set(review_form()):
                del review.params[name]
            decision = decide.override(task_id="decide")(review.output, create.output["purchase"], n)
            keep = GrokVideoToStorageOperator(
                task_id="keep",
                video_url=wait.output,
                dest="file://{{ var.value.get('grok_video_dir', '/tmp/grok-videos') }}/{{ run_id }}.mp4",
                purchase=create.output["purchase"],
            )
            create >> wait >> review >> decision >> keep
        if previous_decision is not None:
            previous_decision >> create  # a round runs only if the one before chose it (a rejection)
        previous_decision = decision
        prompt = pull(f"round_{n}.decide", "next_prompt")
    if previous_decision is not None:
        previous_decision >> rejected_every_round(prompt)


grok_video_review()
