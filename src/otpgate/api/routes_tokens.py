"""``GET /.well-known/jwks.json``: the public keys verification tokens are signed with.

Public, without a key; cacheable for a minute (a verifier that meets an unknown ``kid``
should fetch it again: a rotation signs with the new key at once).
"""

from __future__ import annotations

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec

from otpgate.api import ApiContext
from otpgate.api.schemas import Jwks

PATH = "/.well-known/jwks.json"
CACHE = "public, max-age=60"


def handlers(ctx: ApiContext) -> list[HTTPRouteHandler]:
    @get(PATH, operation_id="jwks", summary="The keys verification tokens are signed with",
         description="RFC 7517 JSON Web Key Set of Ed25519 keys (EdDSA), current first; "
                     "an old key stays until every token it signed has expired.",
         responses={200: ResponseSpec(Jwks, description="The key set",
                                      generate_examples=False)})
    async def jwks() -> Response[bytes]:
        return Response(ctx.runtime.tokens.jwks(), media_type="application/json",
                        headers={"Cache-Control": CACHE})

    return [jwks]
