"""Evaluation tasks: what to read, with which prompts, scored how.

A task file (YAML) lists tasks; a task names a predefined one (``name: cifar10``, only ``path``
to fill in, or nothing when ``--data-root`` holds CLIP_benchmark's ``wds_<name>`` folders) or
spells every field::

    data_root: /data/clip_benchmark        # optional; --data-root overrides
    robustness_fit: average              # optional: a shipped line's name, or {slope, intercept, source}
    tasks:
      - name: cifar10                      # predefined: reader, metric, prompts filled in
        path: /data/wds_cifar10
      - name: my-set
        reader: labels_tsv                 # wds | folder | labels_tsv | captions
        path: /data/my_set
        split: test
        train_split: null                  # a split for the probes (null: zero-shot only)
        train_fraction: 0.5                # or carve the probe's train set from `split`
        metric: top1                       # top1 | mean_per_class | map_11point | roc_auc | recall
        templates: imagenet1k              # a key of the package's templates, or a list
        classnames: null                   # a key, a list, or null (the dataset's own)
        class_subset: null                 # imagenet-a | imagenet-r: labels index ImageNet's 1,000
        shift_of: null                     # imagenet1k: a distribution shift of that task
        probes: [linear, few_shot]         # which probes to run when a train set exists

The 27 datasets of the CLIP paper and its robustness sets are predefined (:data:`PREDEFINED`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trainer.evaluation import paper_prompts, robustness

METRICS = ("top1", "mean_per_class", "map_11point", "roc_auc", "recall")


@dataclass
class Task:
    name: str
    reader: str = "wds"
    path: str | None = None
    split: str = "test"
    train_split: str | None = None
    train_fraction: float | None = None
    metric: str = "top1"
    templates: str | list[str] | None = None
    classnames: str | list[str] | None = None
    class_subset: str | None = None
    shift_of: str | None = None
    probes: list[str] = field(default_factory=lambda: ["linear", "few_shot"])
    options: dict[str, Any] = field(default_factory=dict)  # reader options (labels=, captions=)

    def resolved_templates(self, from_data: list[str] | None, source: str = "") -> list[str]:
        """Task list > the package's set the task names (the paper's) > the dataset's own file."""
        if isinstance(self.templates, list):
            return self.templates
        if isinstance(self.templates, str):
            if self.templates not in paper_prompts.TEMPLATES:
                raise ValueError(f"task {self.name}: no templates named {self.templates!r} in the package "
                                 f"(known: {', '.join(sorted(paper_prompts.TEMPLATES))})")
            return paper_prompts.TEMPLATES[self.templates]
        if from_data:
            return from_data
        raise ValueError(f"task {self.name}: no prompt templates: {source}/zeroshot_classification_templates.txt "
                         "is missing and the task names none (`templates:` a list or a package key such as imagenet1k)")

    def resolved_classnames(self, from_data: list[str] | None) -> list[str]:
        """Task list > the package's (paper's cleaned) names > the dataset's own classnames.txt."""
        if isinstance(self.classnames, list):
            return self.classnames
        if isinstance(self.classnames, str):
            if self.classnames not in paper_prompts.CLASSNAMES:
                raise ValueError(f"task {self.name}: no class names named {self.classnames!r} in the package")
            return paper_prompts.CLASSNAMES[self.classnames]
        if from_data:
            return from_data
        raise ValueError(f"task {self.name}: no class names (give `classnames:` or a classnames.txt)")


def _paper(name: str, folder: str, metric: str = "top1", templates: str | None = None,
           classnames: str | None = None, **extra) -> Task:
    return Task(name=name, path=f"{{data_root}}/{folder}", metric=metric, templates=templates or name,
                classnames=classnames, train_split="train", **extra)


#: The CLIP paper's 27 datasets (Table 9 of its appendix) and the robustness sets, with
#: CLIP_benchmark's folder names (``wds_*``, as LAION publishes them) and the paper's metrics.
PREDEFINED: dict[str, Task] = {t.name: t for t in [
    _paper("food101", "wds_food101"),
    _paper("cifar10", "wds_cifar10"),
    _paper("cifar100", "wds_cifar100"),
    _paper("birdsnap", "birdsnap", templates="imagenet1k"),  # no published template set here
    _paper("sun397", "wds_sun397"),
    _paper("cars", "wds_cars"),
    _paper("fgvc_aircraft", "wds_fgvc_aircraft", "mean_per_class"),
    _paper("voc2007", "wds_voc2007_multilabel", "map_11point", templates="voc2007_multilabel"),
    _paper("dtd", "wds_dtd"),
    _paper("pets", "wds_vtab-pets", "mean_per_class", classnames="pets"),
    _paper("caltech101", "wds_vtab-caltech101", "mean_per_class", classnames="caltech101"),
    _paper("flowers", "wds_vtab-flowers", "mean_per_class", classnames="flowers"),
    _paper("mnist", "wds_mnist"),
    _paper("fer2013", "wds_fer2013", classnames="fer2013"),
    _paper("stl10", "wds_stl10"),
    _paper("eurosat", "wds_vtab-eurosat", classnames="eurosat"),
    _paper("resisc45", "wds_vtab-resisc45"),
    _paper("gtsrb", "wds_gtsrb", classnames="gtsrb"),
    _paper("kitti_closest_vehicle_distance", "wds_kitti_closest_vehicle_distance",
           classnames="kitti_closest_vehicle_distance"),
    _paper("country211", "wds_country211", classnames="country211"),
    _paper("pcam", "wds_vtab-pcam", classnames="pcam"),
    _paper("ucf101", "ucf101", templates="imagenet1k"),  # middle video frames, as the paper did
    _paper("kinetics700", "kinetics700", templates="imagenet1k"),
    _paper("clevr_count_all", "wds_vtab-clevr_count_all", classnames="clevr_count_all"),
    _paper("hateful_memes", "hateful_memes", "roc_auc", templates="imagenet1k"),
    _paper("renderedsst2", "wds_renderedsst2"),
    _paper("imagenet1k", "wds_imagenet1k", classnames="imagenet1k"),
    # Natural distribution shifts of ImageNet: zero-shot only, scored against imagenet1k.
    Task("imagenetv2", path="{data_root}/wds_imagenetv2", templates="imagenet1k", classnames="imagenet1k",
         shift_of="imagenet1k", probes=[]),
    Task("imagenet_sketch", path="{data_root}/wds_imagenet_sketch", templates="imagenet1k",
         classnames="imagenet1k", shift_of="imagenet1k", probes=[]),
    # CLIP_benchmark's -A/-R sets hold 200 classes already; class_subset is for sets whose labels
    # index ImageNet's 1,000 classes (then only the subset's logits compete).
    Task("imagenet-a", path="{data_root}/wds_imagenet-a", templates="imagenet1k", shift_of="imagenet1k", probes=[]),
    Task("imagenet-r", path="{data_root}/wds_imagenet-r", templates="imagenet1k", shift_of="imagenet1k", probes=[]),
    Task("objectnet", path="{data_root}/wds_objectnet", templates="imagenet1k", shift_of="imagenet1k", probes=[]),
    # Retrieval (the paper's Table 13).
    Task("mscoco_captions", path="{data_root}/wds_mscoco_captions", metric="recall", probes=[]),
    Task("flickr30k", path="{data_root}/wds_flickr30k", metric="recall", probes=[]),
]}

PAPER_27 = [n for n in PREDEFINED if PREDEFINED[n].shift_of is None and PREDEFINED[n].metric != "recall"]
ROBUSTNESS = [n for n in PREDEFINED if PREDEFINED[n].shift_of]
CLASS_SUBSETS = {"imagenet-a": paper_prompts.IMAGENET_A_WNIDS, "imagenet-r": paper_prompts.IMAGENET_R_WNIDS}


def subset_indices(name: str) -> list[int]:
    """Positions in ImageNet's class order of a robustness set's class subset."""
    if name not in CLASS_SUBSETS:
        raise ValueError(f"unknown class subset {name!r}: one of {', '.join(CLASS_SUBSETS)}")
    wanted = set(CLASS_SUBSETS[name])
    return [i for i, wnid in enumerate(paper_prompts.IMAGENET_WNIDS) if wnid in wanted]


@dataclass
class TaskList:
    tasks: list[Task]
    robustness_fit: dict | str | None = None  # see robustness.resolve_fit


def load_tasks(spec: str, data_root: str | None = None) -> TaskList:
    """``spec``: a YAML task file, or comma-separated names (predefined, or ``paper``, ``robustness``)."""
    if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
        import yaml

        try:
            document = yaml.safe_load(Path(spec).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{spec}: cannot read the task file: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("tasks"), list):
            raise ValueError(f"{spec}: a task file is a mapping with a `tasks:` list")
        root = data_root or document.get("data_root")
        tasks = [_task(entry, root, spec) for entry in document["tasks"]]
        fit = document.get("robustness_fit")
        if fit is not None:
            try:
                robustness.resolve_fit(fit, {})  # a wrong line fails now, not after the suite has run
            except ValueError as exc:
                raise ValueError(f"{spec}: {exc}") from exc
        return TaskList(tasks, fit)
    names = []
    for name in (n.strip() for n in spec.split(",") if n.strip()):
        names += PAPER_27 if name == "paper" else ROBUSTNESS if name == "robustness" else [name]
    return TaskList([_task({"name": n}, data_root, "--tasks") for n in names])


def _task(entry: dict | str, data_root: str | None, where: str) -> Task:
    entry = {"name": entry} if isinstance(entry, str) else dict(entry)
    if "name" not in entry:
        raise ValueError(f"{where}: a task without a name: {entry}")
    known = {f.name for f in fields(Task)}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"{where}: task {entry['name']}: unknown fields {sorted(unknown)} (known: {sorted(known)})")
    base = PREDEFINED.get(entry["name"])
    if base is None and "path" not in entry:
        raise ValueError(f"{where}: task {entry['name']!r} is not predefined ({', '.join(PREDEFINED)}): give its path")
    task = replace(base, **entry) if base else Task(**entry)
    if task.metric not in METRICS:
        raise ValueError(f"{where}: task {task.name}: unknown metric {task.metric!r} (one of {', '.join(METRICS)})")
    if task.path and "{data_root}" in task.path:
        if not data_root:
            raise ValueError(f"{where}: task {task.name} needs --data-root (or a path)")
        task.path = task.path.replace("{data_root}", data_root.rstrip("/"))
    return task
