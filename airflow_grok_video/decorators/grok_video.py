"""
``@task.grok_video``: a TaskFlow task whose function returns the prompt, and which returns the video URL.

The function builds the prompt (from its arguments, XComs, the context); the decorator validates what
it returned, then does everything :class:`~airflow_grok_video.operators.grok_video.GrokCreateVideoOperator`
does (pre-flight validation, the durable ledger, the billing decision, spend caps), waits for the
video (deferred by default) and returns its URL. Registered with Airflow through the provider info
(``task-decorators``), in the style of the ``common.ai`` provider's ``@task.llm``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_grok_video.exceptions import GrokVideoValidationError
from airflow_grok_video.links.grok_video import SuccessValue
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.validation import create_fields

if TYPE_CHECKING:
    from airflow.sdk import Context


class GrokVideoDecoratedOperator(DecoratedOperator, GrokCreateVideoOperator):
    """
    The operator behind ``@task.grok_video``: its function returns the prompt, and it returns the video URL.

    At execution the function is called (with its arguments and the context, as any TaskFlow task's);
    what it returns is checked, set on the operator (not templated: it is already Python), and then
    the create operator's ``execute`` runs as it is: pre-flight validation, the durable ledger (a
    retry reattaches on Airflow 3.3+), the billing decision and the spend caps. Unlike the create
    operator it waits by default, deferred by default, and returns the video URL (XCom
    ``return_value``); it still pushes the ``purchase``, ``video_url`` and ``video_outcome`` XComs
    (:mod:`airflow_grok_video.outcome`) and has the "Grok Video" extra link.

    :param python_callable: the decorated function; it returns the prompt (a ``str``) or a mapping
        with any of ``prompt``, ``image_url``, ``image_urls``, ``duration``, ``ratio``,
        ``orientation`` and ``model``, each overriding the decorator's argument of that name (a
        returned ``ratio`` or ``orientation`` replaces both of the decorator's, and so does a returned
        ``image_url`` or ``image_urls``). Anything else fails the task before any request, naming the
        field, the value and what is allowed.
    :param op_args: the function's positional arguments (templated).
    :param op_kwargs: the function's keyword arguments (templated); ``.expand()`` maps over them.
    :param prompt: the prompt when the function returns a mapping without one (templated).
    :param wait_for_completion: wait until the video has a URL and return it (the default). With
        ``False`` the task returns the video task id, for a
        :class:`~airflow_grok_video.sensors.grok_video.GrokVideoSensor`.
    :param deferrable: wait in the triggerer (the default, whatever ``[operators] default_deferrable``
        says); ``False`` waits in the worker.
    :param kwargs: every other argument of
        :class:`~airflow_grok_video.operators.grok_video.GrokCreateVideoOperator` (``image_url``,
        ``duration``, ``grok_conn_id``, ``spend_caps``, ...) and of ``BaseOperator`` (``retries``, ...).
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *GrokCreateVideoOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **GrokCreateVideoOperator.template_fields_renderers,
    }
    operator_extra_links = GrokCreateVideoOperator.operator_extra_links
    custom_operator_name: str = "@task.grok_video"
    #: What the task returns: the video URL (the video task id when it does not wait).
    returns: SuccessValue = "video_url"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        prompt: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        # What a mapping returned is pushed as one XCom (the URL): never unrolled into several.
        kwargs["multiple_outputs"] = False
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION if prompt is None else prompt,
            wait_for_completion=wait_for_completion,
            deferrable=deferrable,
            **kwargs,
        )
        if wait_for_completion is False:
            self.returns = "video_task_id"  # no URL is known when it does not wait

    def execute(self, context: Context) -> Any:
        """
        Call the function, apply what it returned, then create (or reattach) and wait as the create operator.

        :param context: the task's context.
        :raises GrokVideoValidationError: the function returned something else than a prompt or a
            mapping of the create's fields, or an invalid value (before any request is sent).
        """
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        self.apply(self.python_callable(*self.op_args, **kwargs))
        # DecoratedOperator.execute: its inlets from assets among the arguments, then the create's execute.
        return super().execute(context)

    def apply(self, returned: Any) -> None:
        """
        Check what the function returned and set it on the operator, over the decorator's arguments.

        The values themselves are checked by the create's pre-flight, like the decorator's arguments.

        :param returned: the function's return value.
        :raises GrokVideoValidationError: naming the field (``return value`` for the whole), the value
            and what is allowed.
        """
        fields = create_fields(returned, name="@task.grok_video's return value", prefix="")
        if "prompt" not in fields and not isinstance(self.prompt, str):
            raise GrokVideoValidationError(
                "prompt",
                None,
                "the function returned no prompt and the decorator gives none: return the prompt "
                "(a str) or a mapping with 'prompt'",
            )
        for name, value in fields.items():
            setattr(self, name, value)


def grok_video_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """
    ``@task.grok_video``: wrap a function that returns a prompt into a task that buys and returns a video.

    For example (the function's arguments map, as any TaskFlow task's)::

        @task.grok_video(image_url="https://example.com/fox.png", duration=15)
        def fox_video(season: str) -> str:
            return f"A red fox runs through a forest in {season}, cinematic"

        fox_video.expand(season=["spring", "winter"])  # one video per season, each URL its own

    The function returns the prompt (a ``str``) or a mapping with any of the create's fields
    (``prompt``, ``image_url``, ``image_urls``, ``duration``, ``ratio``, ``orientation``, ``model``)
    overriding the decorator's. The task creates the video as
    :class:`~airflow_grok_video.operators.grok_video.GrokCreateVideoOperator` does, waits for it
    (deferred unless ``deferrable=False``) and returns its URL. See
    :class:`GrokVideoDecoratedOperator` for every argument.

    :param python_callable: the function to decorate (given when used as ``@task.grok_video``
        without parentheses).
    :param kwargs: the create operator's arguments and ``BaseOperator``'s (``retries``, ...);
        ``multiple_outputs`` cannot be ``True``: the task returns one URL.
    """
    if kwargs.pop("multiple_outputs", None):
        raise ValueError("@task.grok_video returns one video URL: multiple_outputs=True is not supported")
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=False,
        decorated_operator_class=GrokVideoDecoratedOperator,
        **kwargs,
    )
