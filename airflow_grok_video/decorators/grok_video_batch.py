"""
``@task.grok_video_batch``: a TaskFlow task whose function returns a list of videos to buy, in one task.

The function builds the list (from its arguments, XComs, the context); the decorator then does
everything :class:`~airflow_grok_video.operators.grok_video_batch.GrokCreateVideoBatchOperator`
does (every item checked first, each bought at most once, paced, waited for together, deferred by
default) and returns one result per item, in input order.
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

from airflow_grok_video.operators.grok_video_batch import GrokCreateVideoBatchOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class GrokVideoBatchDecoratedOperator(DecoratedOperator, GrokCreateVideoBatchOperator):
    """
    The operator behind ``@task.grok_video_batch``: its function returns the items; it returns their results.

    At execution the function is called (with its arguments and the context, as any TaskFlow
    task's); the list it returns becomes the batch's ``items`` (not templated: it is already
    Python), and :meth:`GrokCreateVideoBatchOperator.execute
    <airflow_grok_video.operators.grok_video_batch.GrokCreateVideoBatchOperator.execute>` runs as it is.
    Unlike the operator, it waits deferred by default.

    :param python_callable: the decorated function; it returns the list of items, each a prompt (a
        ``str``) or a mapping of the create's fields over the decorator's.
    :param op_args: the function's positional arguments (templated).
    :param op_kwargs: the function's keyword arguments (templated); ``.expand()`` maps over them.
    :param deferrable: wait in the triggerer (the default, whatever ``[operators] default_deferrable``
        says); ``False`` waits in the worker.
    :param kwargs: every other argument of
        :class:`~airflow_grok_video.operators.grok_video_batch.GrokCreateVideoBatchOperator` but
        ``items`` (``image_url``, ``duration``, ``max_in_flight``, ``min_success``, ...) and of
        ``BaseOperator`` (``retries``, ...).
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *GrokCreateVideoBatchOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = dict(DecoratedOperator.template_fields_renderers)
    custom_operator_name: str = "@task.grok_video_batch"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs["multiple_outputs"] = False  # the results are one XCom, a list
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            items=SET_DURING_EXECUTION,
            deferrable=deferrable,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        """
        Call the function, take the list it returned as the items, then buy and wait as the batch operator.

        :param context: the task's context.
        :raises GrokVideoValidationError: the function returned no list, or an invalid item (before
            any request is sent).
        """
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        self.items = self.python_callable(*self.op_args, **kwargs)
        # DecoratedOperator.execute: its inlets from assets among the arguments, then the batch's execute.
        return super().execute(context)


def grok_video_batch_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """
    ``@task.grok_video_batch``: wrap a function that returns a list of prompts into a task that buys them all.

    For example::

        @task.grok_video_batch(image_url="https://example.com/fox.png", min_success=9)
        def nightly(subjects: list[str]) -> list[str]:
            return [f"A red fox and {subject}, cinematic" for subject in subjects]

    See :class:`GrokVideoBatchDecoratedOperator` for every argument.

    :param python_callable: the function to decorate (given when used without parentheses).
    :param kwargs: the batch operator's arguments but ``items``, and ``BaseOperator``'s;
        ``multiple_outputs`` cannot be ``True``: the task returns one list.
    """
    if kwargs.pop("multiple_outputs", None):
        raise ValueError("@task.grok_video_batch returns one list: multiple_outputs=True is not supported")
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=False,
        decorated_operator_class=GrokVideoBatchDecoratedOperator,
        **kwargs,
    )
