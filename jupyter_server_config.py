"""Loaded by `make lab` (Jupyter reads this file from the folder it starts in): notebooks are cleaned on save."""


def nbdev_clean_jupyter(**kwargs):
    "nbdev-clean every notebook as it is saved, so that git sees only what a person changed."
    try:
        from nbdev.clean import clean_jupyter
    except ModuleNotFoundError:
        return
    clean_jupyter(**kwargs)


c.ContentsManager.pre_save_hook = nbdev_clean_jupyter  # noqa: F821 (c is Jupyter's config object)
