"""`cirgraph chat` (terminal chat over the toy world, resumed with --thread) and `cirgraph ui` (binding, galleries,
the app it serves)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cirgraph.chat.session import ChatSession
from cirgraph.chat.store import ChatStore
from cirgraph.cli import app
from cirgraph.cli import chat as chat_cli
from cirgraph.cli import ui as ui_cli
from cirgraph.retriever import Retriever
from cirgraph.testing.memory_gallery import build_toy_gallery
from cirgraph.testing.toy_pipeline import toy_models


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Both commands open the toy gallery with scripted models instead of models from Settings."""
    gallery, embedder, text_embedder = build_toy_gallery(tmp_path / "images", name="shop")
    opened: dict = {"chat": [], "ui": [], "served": []}

    def retriever(preset: str) -> Retriever:
        llm, vlm = toy_models(gallery, embedder)
        return Retriever(gallery=gallery, llm=llm, vlm=vlm, embedder=embedder, text_embedder=text_embedder,
                         config=preset)

    def open_session(name: str, preset: str, thread: str | None, k: int) -> ChatSession:
        from cirgraph.settings import Settings

        opened["chat"].append((name, preset, thread, k))
        return ChatSession(thread, retriever=retriever(preset), store=ChatStore.from_settings(Settings()), k=k)

    def open_retriever(name: str, preset: str) -> Retriever:
        opened["ui"].append((name, preset))
        return retriever(preset)

    monkeypatch.setattr(chat_cli, "open_session", open_session)
    monkeypatch.setattr(ui_cli, "open_retriever", open_retriever)
    def serve(web_app: object, host: str, port: int) -> None:  # the checks run while the app is "served"
        opened["served"].append((host, port))
        opened["check"](web_app)

    monkeypatch.setattr(ui_cli, "serve", serve)
    opened["images"] = tmp_path / "images"
    return opened


def chat(*args: str, lines: list[str]):
    return CliRunner().invoke(app, ["chat", *args], input="\n".join(lines) + "\n", catch_exceptions=False,
                              env={"COLUMNS": "300"})


def test_a_terminal_conversation_and_its_resumption(toy: dict) -> None:
    image = toy["images"] / "blue-dress.png"
    res = chat("--gallery", "shop", "--preset", "cirevl", "-k", "3",
               lines=[f"/image {image} make it red", "the second one, but blue", "/history", "/undo", "/quit"])
    assert res.exit_code == 0, res.output
    assert toy["chat"] == [("shop", "cirevl", None, 3)]
    thread = re.search(r"thread (\w+) on gallery 'shop'", res.stdout).group(1)
    assert "turn 1: 3 results" in res.stdout and "red-dress" in res.stdout and "toy" not in res.stderr
    assert str(toy["images"] / "red-dress.png") in res.stdout  # paths in the table
    assert "searched for: a red dress" in res.stdout and "turn 2: 3 results" in res.stdout
    assert "1. make it red -> a red dress" in res.stdout and "2. the second one, but blue" in res.stdout
    assert "took back turn 2" in res.stdout
    assert [ln.split(":")[0] for ln in res.stderr.splitlines()][:3] == ["caption_reference", "recompose", "retrieve"]
    assert f"resume with: cirgraph chat --gallery shop --thread {thread} --preset cirevl -k 3" in res.stdout

    again = chat("--gallery", "shop", "--thread", thread, "--preset", "cirevl", lines=["/history", "/reset",
                                                                                       "/history"])
    assert again.exit_code == 0, again.output
    assert "1 turn(s) so far" in again.stdout and "1. make it red" in again.stdout
    assert "started over" in again.stdout and again.stdout.count("1. make it red") == 1


def test_mistakes_are_reported_and_the_chat_goes_on(toy: dict) -> None:
    res = chat("--preset", "cirevl", lines=["make it red", "/pick 1", "/image /no/such.png x", "/frobnicate",
                                            "/ref blue-dress", "/pick 9 red", "/undo", "/undo", "/undo"])
    assert res.exit_code == 0, res.output
    assert "error: reference: the first message needs a reference image" in res.stderr
    assert "error: pick 1: there are no results to pick from yet" in res.stderr
    assert "no such file" in res.stderr and "unknown or incomplete command '/frobnicate'" in res.stdout
    assert "reference is now blue-dress" in res.stdout
    assert "error: pick 9: there are no results to pick from yet" in res.stderr
    assert "took back turn 1" in res.stdout and "has no turn to undo" in res.stderr


@pytest.mark.parametrize("line", ["/image", "/pick two", "/ref"])
def test_incomplete_commands_explain_themselves(toy: dict, line: str) -> None:
    res = chat(lines=[line])
    assert res.exit_code == 0 and "unknown or incomplete command" in res.stdout


def test_parse_line() -> None:
    assert chat_cli.parse_line("make it red") == ("say", "", "make it red")
    assert chat_cli.parse_line('/image "my photo.jpg" in red') == ("image", "my photo.jpg", "in red")
    assert chat_cli.parse_line("/PICK 2 but blue") == ("pick", "2", "but blue")
    assert chat_cli.parse_line("/undo") == ("undo", "", "")


def test_ui_binds_loopback_by_default_and_serves_the_chat(toy: dict) -> None:
    from fastapi.testclient import TestClient

    def check(web_app: object) -> None:
        with TestClient(web_app, base_url="http://attacker.example") as rebound:
            assert rebound.get("/api/galleries").status_code == 400  # DNS rebinding: not a loopback Host
        with TestClient(web_app, base_url="http://127.0.0.1:8000") as client:
            assert client.get("/api/galleries").json()[0]["name"] == "shop"
            thread = client.post("/api/threads").json()["thread_id"]
            turn = client.post(f"/api/threads/{thread}/turns", data={"text": "make it red", "ref_id": "blue-dress"})
            assert turn.status_code == 200 and turn.json()["hits"][0]["id"] == "red-dress"

    toy["check"] = check
    res = CliRunner().invoke(app, ["ui", "--gallery", "shop", "--preset", "cirevl"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert toy["served"] == [("127.0.0.1", 8000)] and toy["ui"] == [("shop", "cirevl")]
    assert "http://127.0.0.1:8000/" in res.stdout and "warning" not in res.stderr


def test_ui_exposed_needs_the_printed_token_and_honours_limits(toy: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    def check(web_app: object) -> None:
        with TestClient(web_app) as anonymous:
            assert anonymous.get("/api/galleries").status_code == 401
            assert anonymous.post("/api/threads").status_code == 401
            page = anonymous.get("/", follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"] == "/login"
            assert 'name="token"' in anonymous.get("/login").text
        with TestClient(web_app, headers={"Authorization": "Bearer generated-token"}) as client:
            thread = client.post("/api/threads").json()["thread_id"]
            big = {"image": ("big.png", b"0" * 200_000, "image/png")}
            assert client.post(f"/api/threads/{thread}/turns", files=big).status_code == 413

    toy["check"] = check
    monkeypatch.setattr(ui_cli.secrets, "token_urlsafe", lambda n: "generated-token")
    monkeypatch.setenv("CIRGRAPH_UI_TOKEN", "")  # empty: no token given, so one is generated
    res = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--port", "9001", "--max-upload-mb", "0.01"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "access token: generated-token" in res.stdout and toy["served"] == [("0.0.0.0", 9001)]
    assert toy["ui"] == [("default", "modification+reference")]  # no LLM configured: the default needs none
    assert "preset: modification+reference (no LLM is configured" in res.stderr


def test_is_loopback() -> None:
    assert ui_cli.is_loopback("127.0.0.1") and ui_cli.is_loopback("::1") and ui_cli.is_loopback("localhost")
    assert not ui_cli.is_loopback("0.0.0.0") and not ui_cli.is_loopback("example.org")


def test_ui_with_a_chosen_token_and_origin(toy: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    def check(web_app: object) -> None:
        with TestClient(web_app, base_url="http://127.0.0.1:8000") as client:
            assert client.get("/api/galleries").status_code == 401
            login = client.post("/login", data={"token": "team-token"}, headers={"Origin": "https://chat.example"})
            assert login.status_code == 200 and client.get("/api/galleries").status_code == 200
            assert client.post("/api/threads", headers={"Origin": "https://evil.example"}).status_code == 403

    toy["check"] = check
    monkeypatch.setenv("CIRGRAPH_UI_TOKEN", "team-token")
    res = CliRunner().invoke(app, ["ui", "--allow-origin", "https://chat.example"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "access token required" in res.stdout and "team-token" not in res.stdout
