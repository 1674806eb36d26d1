"""Personal API tokens over the API, so scripts can rotate their own credentials."""

from __future__ import annotations

from datetime import UTC, datetime

from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from pydantic import field_validator

from audioml.audit import Actor
from audioml.models import ApiToken

router = Router(tags=["tokens"])


class TokenIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def in_utc(cls, value: datetime | None) -> datetime | None:
        # Any offset ISO 8601 allows (up to ±23:59) is fine here; PostgreSQL only takes up to ±15:59.
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    is_active: bool


class TokenCreatedOut(TokenOut):
    token: str = Field(..., description="The token itself. It is shown only once.")


@router.get("/tokens", response=list[TokenOut], summary="List my API tokens")
def list_tokens(request):
    return ApiToken.objects.filter(user=request.user)


@router.post("/tokens", response={201: TokenCreatedOut}, summary="Create an API token")
def create_token(request, payload: TokenIn):
    token, raw = ApiToken.issue(request.user, payload.name.strip(), payload.expires_at, by=Actor.from_request(request))
    return Status(201, {**TokenOut.from_orm(token).dict(), "token": raw})


@router.post("/tokens/{token_id}/revoke", response=TokenOut, summary="Revoke an API token")
def revoke_token(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.revoke(by=Actor.from_request(request))
    return token
