"""Your business logic: one module per endpoint and per subscribed message version.

`shoestring generate` creates a module here when one is missing and never touches it again, so
everything in this folder is yours. Each module defines `handle(ctx, data)`:

    def handle(ctx: Context, data: dict) -> dict:
        ...                      # write through ctx.db (the request's transaction)
        return {...}             # must match the endpoint's response schema

Raise `Problem(404, "no order 42")` (`from shoestring_runtime import Problem`) to answer with an
error; anything else a handler raises rolls the transaction back and answers 500.
"""
