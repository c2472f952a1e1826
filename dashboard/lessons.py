"""Lesson pages: explain, predict, then see what the simulation measured."""

from __future__ import annotations

from functools import lru_cache

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from simulator.lessons import LESSONS, Answer, Lesson, lesson


def lesson_links() -> list[dict[str, str]]:
    return [
        {
            "slug": item.slug,
            "title": f"{item.number}. {item.title}",
            "url": reverse("lesson_page", args=[item.slug]),
        }
        for item in LESSONS
    ]


@lru_cache(maxsize=128)
def measured(slug: str, variant: str = "") -> Answer:
    """The lesson's answer, measured by running its scenario headless - or a variant of it, a
    different system (deterministic: cached)."""
    found = lesson(slug)
    assert found is not None
    change = found.variants[variant][1] if variant else None
    return found.measure(None, change)


def _context(item: Lesson) -> dict[str, object]:
    index = LESSONS.index(item)
    return {
        "lesson": item,
        "previous": LESSONS[index - 1] if index > 0 else None,
        "next": LESSONS[index + 1] if index + 1 < len(LESSONS) else None,
        "live_url": reverse("compare_create" if item.live == "compare" else "simulation_create"),
        "scenario": item.scenario(),
    }


def lesson_page(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the idea, the steps, the question. POST a prediction: the measured answer."""
    item = lesson(slug)
    if item is None:
        raise Http404(f"No lesson {slug!r}.")
    if not request.session.session_key:
        request.session.save()  # "Open it live" creates a simulation owned by this session
    context = _context(item)
    if request.method == "POST":
        prediction = request.POST.get("prediction", "")
        variant = request.POST.get("variant", "")
        if variant and variant not in item.variants:
            variant = ""  # an unknown variant: the lesson's own system
        choices = dict(item.choices)
        answer = measured(slug, variant)
        context.update(
            variant=variant,
            variant_text=item.variants[variant][0] if variant else "",
            answer=answer,
            prediction=prediction,
            prediction_text=choices.get(prediction, ""),
            right=prediction == answer.correct,
            correct_text=choices.get(answer.correct, answer.correct),
            hops=answer.data.get("hops") if slug == "correlation-ids" else None,
        )
        if getattr(request, "htmx", False):
            return render(request, "_lesson_answer.html", context)
    return render(request, "lesson.html", context)
