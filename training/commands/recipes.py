"""``reid recipes``: list the training recipes, one line each with the paper it follows."""

from __future__ import annotations

import argparse

HELP = "list the training recipes"
DESCRIPTION = (
    "Print every training recipe: its name, the paper it follows and what it trains. --sizes adds each "
    "model's parameter count and FLOPs (2 × MACs of one pair for pair models, of one image otherwise) at the "
    "recipe's input size, beside the paper's published figures."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` (settings and notes) and ``--sizes`` (parameters and FLOPs)."""
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="also print each recipe's settings and notes"
    )
    parser.add_argument(
        "--sizes", action="store_true", help="also print parameters and FLOPs (builds every model: seconds)"
    )
    parser.add_argument("recipe", nargs="*", help="only these recipes (default: all)")


def run(args: argparse.Namespace) -> int:
    """Print the recipes."""
    from training.engine.recipes import get_recipe, recipe_names
    from training.engine.sizes import format_size, recipe_size

    names = list(args.recipe) or recipe_names()
    recipes = [get_recipe(name) for name in names]  # unknown names fail before any output
    width = max(len(n) for n in names)
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.description}  [paper {recipe.paper}]")
        if args.sizes:
            print(f"{'':<{width}}    {format_size(recipe_size(recipe.name))}")
        if args.verbose:
            if recipe.notes:
                print(f"{'':<{width}}    notes: {recipe.notes}")
            for key, value in sorted(recipe.defaults.items()):
                print(f"{'':<{width}}    {key} = {value!r}")
    return 0
