"""Papers on three subjects, written for the similarity, feedback and weekly tests."""

from __future__ import annotations

import datetime as dt

from newsletter.models import Paper


def paper(key: str, title: str, abstract: str, **extra: object) -> Paper:
    return Paper(title=title, abstract=abstract, id=key, **extra)  # type: ignore[arg-type]


ROBOTICS = (
    paper(
        "2601.00001",
        "Diffusion-free visuomotor policies for robot manipulation",
        "We train a robot arm to grasp and place household objects from camera images. "
        "The manipulation policy transfers from simulation to the real robot.",
        keywords=("robot manipulation", "visuomotor policy"),
        categories=("cs.RO",),
    ),
    paper(
        "2601.00002",
        "Legged robot locomotion over rough terrain",
        "A quadruped robot learns locomotion on stairs and gravel with reinforcement "
        "learning in simulation, then walks on the real robot without tuning.",
        keywords=("legged locomotion", "sim-to-real"),
        categories=("cs.RO",),
    ),
    paper(
        "2601.00003",
        "Humanoid robot whole-body manipulation from teleoperation",
        "Teleoperation data of a humanoid robot trains whole-body manipulation policies "
        "that grasp boxes and open doors on the real robot.",
        keywords=("humanoid", "robot manipulation"),
        categories=("cs.RO", "cs.LG"),
    ),
)

DIFFUSION = (
    paper(
        "2601.00011",
        "Faster sampling for latent diffusion image generation",
        "We cut the denoising steps of latent diffusion models for text-to-image "
        "generation with a distilled sampler, keeping image quality.",
        keywords=("diffusion models", "image generation"),
        categories=("cs.CV",),
    ),
    paper(
        "2601.00012",
        "Video diffusion transformers with temporal attention",
        "A diffusion transformer generates video clips; temporal attention keeps the "
        "denoising of frames consistent for long video generation.",
        keywords=("video diffusion", "diffusion models"),
        categories=("cs.CV",),
    ),
    paper(
        "2601.00013",
        "Guidance schedules for text-to-image diffusion",
        "Classifier-free guidance strength changes over the denoising steps of a "
        "text-to-image diffusion model; a schedule improves image generation.",
        keywords=("diffusion models", "guidance"),
        categories=("cs.CV", "cs.LG"),
    ),
)

LANGUAGE = (
    paper(
        "2601.00021",
        "Chain-of-thought length and reasoning accuracy in language models",
        "Longer chains of thought help large language models on math reasoning "
        "benchmarks up to a point; we measure where reasoning accuracy stops growing.",
        keywords=("chain-of-thought", "reasoning"),
        categories=("cs.CL",),
    ),
    paper(
        "2601.00022",
        "Tokenizer choices for multilingual language models",
        "We compare tokenizers for a multilingual language model across forty "
        "languages and their effect on perplexity.",
        keywords=("tokenizer", "multilingual"),
        categories=("cs.CL",),
    ),
)

ALL = ROBOTICS + DIFFUSION + LANGUAGE


def dated(p: Paper, day: dt.date, upvotes: int) -> Paper:
    """``p`` as listed on ``day`` with ``upvotes``."""
    import dataclasses

    at = dt.datetime.combine(day, dt.time(6, 0), tzinfo=dt.UTC)
    return dataclasses.replace(p, submitted_at=at, upvotes=upvotes)
