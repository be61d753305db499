"""Which files of a folder git would keep: .gitignore rules (nested too) plus --exclude patterns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pathspec import GitIgnoreSpec

from raytune_ft.errors import UserError

# Ray applies .rayignore like .gitignore when it packs a working_dir; we honour both, so that
# what we stage is what Ray would have sent.
IGNORE_FILES = (".gitignore", ".rayignore")
# Never uploaded: git's own folder (or the file a worktree or submodule has instead), and the
# ignore files, which Ray would apply again to the staged copy and drop the data we force in.
NEVER_UPLOADED = {".git", *IGNORE_FILES}


def _spec_from(lines: list[str]) -> GitIgnoreSpec | None:
    try:
        spec = GitIgnoreSpec.from_lines(lines)
    except ValueError:  # git skips a malformed line and keeps the rest; so do we
        kept = []
        for line in lines:
            try:
                GitIgnoreSpec.from_lines([line])
            except ValueError:
                continue
            kept.append(line)
        spec = GitIgnoreSpec.from_lines(kept)
    return spec if spec.patterns else None


def exclude_spec(patterns: list[str]) -> GitIgnoreSpec | None:
    """--exclude patterns (gitignore syntax, relative to the working directory)."""
    problems = []
    for pattern in patterns:
        try:
            GitIgnoreSpec.from_lines([pattern])
        except ValueError as exc:
            problems.append(f"--exclude {pattern!r}: {exc}; expected a .gitignore pattern")
    if problems:
        raise UserError(problems)
    return GitIgnoreSpec.from_lines(patterns) if patterns else None


@dataclass
class IgnoreRules:
    """Ignore files by folder, relative to `anchor` (the enclosing git repository, or the
    working directory): a deeper file's rules win over a shallower one's, as in git."""

    anchor: Path
    by_folder: dict[str, GitIgnoreSpec] = field(default_factory=dict)

    @classmethod
    def for_folder(cls, root: Path) -> IgnoreRules:
        """Rules for walking `root`: those of every folder from its git repository down to it.

        A folder inside a repository is ignored by the repository's .gitignore files as well,
        so `--working-dir experiments` skips what the top-level .gitignore names.
        """
        repo = next((d for d in (root, *root.parents) if (d / ".git").exists()), None)
        rules = cls(anchor=repo or root)
        if repo is not None:
            info = repo / ".git" / "info" / "exclude"
            rules.load("", [info] if info.is_file() else [])
            for folder in reversed(root.relative_to(repo).parents):
                rules.load_folder(repo / folder)
        return rules

    def load_folder(self, folder: Path) -> None:
        self.load(self.key(folder), [folder / name for name in IGNORE_FILES])

    def load(self, key: str, files: list[Path]) -> None:
        lines: list[str] = []
        for file in files:
            try:
                lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
        spec = _spec_from(lines)
        if spec is not None:
            old = self.by_folder.get(key)
            self.by_folder[key] = spec if old is None else old + spec

    def key(self, path: Path) -> str:
        rel = path.relative_to(self.anchor).as_posix()
        return "" if rel == "." else rel

    def ignored(self, path: Path, is_dir: bool) -> bool:
        parts = self.key(path).split("/")
        verdict = False
        for i in range(len(parts)):
            spec = self.by_folder.get("/".join(parts[:i]))
            if spec is None:
                continue
            result = spec.check_file("/".join(parts[i:]) + ("/" if is_dir else ""))
            if result.include is not None:
                verdict = result.include
        return verdict


@dataclass
class Walk:
    files: dict[str, Path] = field(default_factory=dict)  # posix path under root -> file
    skipped_links: list[str] = field(default_factory=list)  # symlinked folders, not followed


def kept_files(root: Path, excludes: GitIgnoreSpec | None = None) -> Walk:
    """Every regular file under `root` that neither .gitignore nor `excludes` drops."""
    rules = IgnoreRules.for_folder(root)
    walk = Walk()

    def dropped(path: Path, rel: str, is_dir: bool) -> bool:
        if path.name in NEVER_UPLOADED:
            return True
        if excludes is not None and excludes.match_file(rel + ("/" if is_dir else "")):
            return True
        return rules.ignored(path, is_dir)

    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        rules.load_folder(folder)
        base = folder.relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        kept_dirs = []
        for name in sorted(dirnames):
            path = folder / name
            if dropped(path, prefix + name, is_dir=True):
                continue
            if path.is_symlink():  # os.walk does not follow them; say so instead of hiding it
                walk.skipped_links.append(prefix + name)
                continue
            kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            path = folder / name
            if path.is_file() and not dropped(path, prefix + name, is_dir=False):
                walk.files[prefix + name] = path
    return walk
