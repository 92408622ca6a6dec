"""tinylang serve, driven by the real openai client over HTTP: what it answers, that batching never
changes a seeded answer, streaming, stop sequences, instruct chat, and clear 4xx errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import torch
import yaml

from tests.conftest import make_stories, recipe_dict, write_txt
from tinylang.checkpoint import load_model
from tinylang.generate import complete_story, prompt_ids
from tinylang.langpack import load_pack
from tinylang.model import EOS_ID, PAD_ID
from tinylang.recipe import load_recipe
from tinylang.serve import ModelServer, ServeOptions
from tinylang.serve.api import ApiError, ChatRequest, chat_prompt
from tinylang.train import train

MODEL = "tiny"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from rich.console import Console

    root = tmp_path_factory.mktemp("serve")
    stories = write_txt(root / "stories.txt", make_stories(300))
    raw = recipe_dict(stories, root / MODEL, root / "cache")
    raw["train"] |= {"max_steps": 30, "checkpoint_every": 30}
    raw["eval"] |= {"every_steps": 30, "samples": 0}
    (root / "r.yaml").write_text(yaml.safe_dump(raw))
    train(load_recipe(root / "r.yaml"), console=Console(quiet=True))
    return root / MODEL


@pytest.fixture(scope="module")
def server(run_dir):
    server = ModelServer.from_run(run_dir, ServeOptions(port=0, max_batch=8))
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_lists_the_model_and_binds_to_loopback(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "tinylang"
    assert server.server_address[0] == "127.0.0.1"


def test_greedy_completion_is_what_the_model_generates(client, run_dir):
    model, _ = load_model(run_dir)
    expected = complete_story(model, "Tarina 5.", max_bytes=40, temperature=0, top_k=None)
    ids = model.generate(prompt_ids("Tarina 5."), 40, temperature=0, stop_at_end=True)[0, 10:].tolist()
    generated = len([i for i in ids if i != EOS_ID and i != PAD_ID])
    answer = client.completions.create(model=MODEL, prompt="Tarina 5.", max_tokens=40, temperature=0)
    # a character cut by the byte budget is dropped rather than shown as U+FFFD
    assert answer.choices[0].text == expected.removesuffix("\ufffd")
    assert answer.usage.prompt_tokens == len(b"Tarina 5.")
    assert answer.usage.completion_tokens == generated
    assert answer.choices[0].finish_reason == ("length" if generated == 40 else "stop")


def test_max_tokens_counts_bytes_and_seeds_repeat(client):
    a = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=25, temperature=1.0, seed=7)
    b = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=25, temperature=1.0, seed=7)
    assert a.choices[0].text == b.choices[0].text
    assert a.usage.completion_tokens <= 25
    two = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=25, n=2, seed=7, echo=True)
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].text == "Tarina" + a.choices[0].text  # choice i uses seed + i


def test_prompts_longer_than_the_context_keep_their_end(client, run_dir):
    model, _ = load_model(run_dir)
    long_prompt = "Tarina 7. " * 30  # 300 bytes against a 64-byte context
    answer = client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=20, temperature=0)
    expected = complete_story(model, long_prompt, max_bytes=20, temperature=0, top_k=None)
    assert answer.choices[0].text == expected.removesuffix("\ufffd")


def test_several_prompts_answer_in_openai_order(client):
    many = client.completions.create(model=MODEL, prompt=["Tarina 1", "Tarina 2"], n=2, max_tokens=20, seed=5)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    alone = client.completions.create(model=MODEL, prompt="Tarina 2", n=2, max_tokens=20, seed=5)
    assert [c.text for c in many.choices[2:]] == [c.text for c in alone.choices]
    assert many.usage.prompt_tokens == 16 and alone.usage.prompt_tokens == 8


def test_streaming_gives_the_same_text_in_pieces(client):
    answer = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=60, seed=3)
    whole = answer.choices[0].text
    chunks = list(client.completions.create(model=MODEL, prompt="Tarina", max_tokens=60, seed=3, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole and len(chunks) > 2
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage == answer.usage


def test_stop_sequences_cut_the_answer(client):
    greedy = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=60, temperature=0).choices[0].text
    stop = greedy[20:23]
    cut = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=60, temperature=0, stop=[stop, "@@"])
    assert cut.choices[0].text == greedy[: greedy.index(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=MODEL, prompt="Tarina", max_tokens=60, temperature=0, stop=stop,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text


def test_concurrent_streams_are_batched_and_answers_do_not_change(client, server):
    def ask(seed: int) -> str:
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Tarina {seed}"}],
                                                max_tokens=120, seed=seed, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream)

    alone = {seed: ask(seed) for seed in range(8)}
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda s=seed: results.__setitem__(s, ask(s))) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == alone
    assert all(text.startswith(f"Tarina {seed}") for seed, text in alone.items())  # chat: the whole story
    assert server.served.engine.largest_batch > 1


def test_a_vanished_client_frees_its_row(server):
    request = urllib.request.Request(
        server.url + "/completions", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": MODEL, "prompt": "Tarina", "max_tokens": 10**6, "stream": True}).encode())
    with urllib.request.urlopen(request) as response:
        response.readline()
    deadline = time.monotonic() + 10
    while server.served.engine.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.served.engine.active == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 3}, "temperature"),
        ({"logprobs": 2}, "logprobs are not supported"),
        ({"n": 17}, "invalid n"),
        ({"presence_penalty": 1.0}, "presence_penalty is not supported"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop sequences"),
        ({"extra_body": {"banana": 1}}, "unrecognized request argument supplied: banana"),
        ({"prompt": []}, "must not be an empty list"),
        ({"seed": 2**64}, "invalid seed"),
        ({"stream_options": {"include_usage": True}}, "only allowed with stream"),
        ({"prompt": 5}, "invalid prompt:"),
        ({"prompt": ["a"] * 9, "n": 8}, "at most 64 per request"),
    ],
)
def test_bad_completion_requests_are_400(client, kwargs, message):
    kwargs = {"model": MODEL, "prompt": "Tarina"} | kwargs
    with pytest.raises(openai.BadRequestError, match=message):
        client.completions.create(**kwargs)


def test_unknown_model_endpoint_and_body_errors(client, server):
    with pytest.raises(openai.NotFoundError, match="this server has 'tiny'"):
        client.completions.create(model="gpt-4o", prompt="x")
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="tools are not supported"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    surrogate = b'{"model": "tiny", "prompt": "\\ud800"}'  # valid JSON, but no UTF-8 can hold it
    for method, path, body, status in [
        ("POST", "/embeddings", b"{}", 404), ("POST", "/completions", b"{not json", 400),
        ("POST", "/models", b"{}", 405), ("POST", "/completions", surrogate, 400),
        ("PUT", "/completions", b"{}", 405), ("DELETE", "/models/tiny", None, 405), ("PATCH", "/nothing", b"", 404),
    ]:
        request = urllib.request.Request(server.url + path, data=body, method=method)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request)
        answer = json.loads(error.value.read())
        assert error.value.code == status and "error" in answer
        if body is surrogate:
            assert "not valid Unicode" in answer["error"]["message"] and answer["error"]["param"] == "prompt"


def test_instruct_chat_renders_the_pack_request():
    pack = load_pack("fi")
    request = ChatRequest(model="m", messages=[
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "Sanat: koira, pallo\nPiirteet: vuoropuhelu, dialogue\nTarina: Olipa kerran"}])
    prompt, beginning, words = chat_prompt(request, pack)
    assert prompt == pack.instruct_text(["koira", "pallo"], ["dialogue"], "Olipa kerran")  # one feature, named twice: asked once
    assert beginning == "Olipa kerran" and words == ["koira", "pallo"]
    plain = ChatRequest(model="m", messages=[{"role": "user", "content": "koira, pallo, iloinen"}])
    assert chat_prompt(plain, pack) == (pack.instruct_text(["koira", "pallo", "iloinen"], [], ""), "",
                                        ["koira", "pallo", "iloinen"])
    assert chat_prompt(plain, None) == ("koira, pallo, iloinen", "koira, pallo, iloinen", [])  # story model
    with pytest.raises(ApiError, match="unknown feature"):
        chat_prompt(ChatRequest(model="m", messages=[{"role": "user", "content": "features: jazz"}]), pack)
    with pytest.raises(ApiError, match="an empty request"):
        chat_prompt(ChatRequest(model="m", messages=[{"role": "user", "content": " \n"}]), pack)


def test_instruct_model_chat_over_http(run_dir):
    server = ModelServer.from_run(run_dir, ServeOptions(port=0, chat_format="instruct", lang="fi"))
    server.start_in_thread()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "words: koira\nstory: Olipa kerran"}], max_tokens=20)
        assert answer.choices[0].message.content.startswith("Olipa kerran")
        assert answer.usage.prompt_tokens == len(load_pack("fi").instruct_text(["koira"], [], "Olipa kerran").encode())

        def stories(guidance: float) -> list[str]:
            answer = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "words: koira, talo\nstory: Olipa kerran"}],
                max_tokens=200, n=3, seed=5, temperature=1.0, extra_body={"guidance": guidance})
            return [choice.message.content.lower() for choice in answer.choices]

        # word guidance (a tinylang extension, on by default for instruct chat) steers every choice
        assert all("koira" in story and "talo" in story for story in stories(30.0)), stories(30.0)
        assert not all("koira" in story and "talo" in story for story in stories(0.0))
        with pytest.raises(openai.BadRequestError, match="guidance"):
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "koira"}],
                                           extra_body={"guidance": -1})
    finally:
        server.shutdown()
        server.server_close()


def test_cli_serves_on_loopback_by_default(run_dir):
    process = subprocess.Popen([sys.executable, "-m", "tinylang", "serve", str(run_dir), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"})
    try:
        line = process.stdout.readline()
        assert "Serving tiny" in line and "http://127.0.0.1:" in line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "/models") as response:
            assert json.loads(response.read())["data"][0]["id"] == MODEL
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_an_unknown_pack_is_refused_at_start(run_dir):
    result = subprocess.run([sys.executable, "-m", "tinylang", "serve", str(run_dir), "--port", "0", "--lang", "xx"],
                            capture_output=True, text=True, timeout=60, env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and "xx" in result.stderr and "Traceback" not in result.stderr


def test_api_key_and_cors(run_dir):
    server = ModelServer.from_run(run_dir, ServeOptions(port=0, api_key="s3cret", allow_origin="https://chat.example"))
    server.start_in_thread()
    try:
        with pytest.raises(openai.AuthenticationError, match="API key"):
            openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0)
        assert good.completions.create(model=MODEL, prompt="Tarina", max_tokens=5).usage.completion_tokens <= 5
        preflight = urllib.request.Request(server.url + "/chat/completions", method="OPTIONS")
        with urllib.request.urlopen(preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "https://chat.example"
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        # OpenAI's JS SDK asks for its own headers in the preflight; they must be allowed.
        asked = "authorization, content-type, x-stainless-os, x-stainless-lang"
        preflight = urllib.request.Request(server.url + "/chat/completions", method="OPTIONS",
                                           headers={"Access-Control-Request-Headers": asked})
        with urllib.request.urlopen(preflight) as response:
            assert response.headers["Access-Control-Allow-Headers"] == asked
        # The auth scheme is case-insensitive (RFC 9110); the key is not.
        for header, status in (("bearer s3cret", 200), ("BEARER s3cret", 200), ("bearer S3CRET", 401), ("s3cret", 401)):
            request = urllib.request.Request(server.url + "/models", headers={"Authorization": header})
            try:
                with urllib.request.urlopen(request) as response:
                    assert response.status == status
            except urllib.error.HTTPError as error:
                assert error.code == status, header
    finally:
        server.shutdown()
        server.server_close()


def test_chunked_bodies_top_k_zero_and_checkpoint_names(run_dir, server):
    """A chunked JSON body is read like a sized one; top_k 0 means every byte, as on the CLI; a
    served checkpoint file is named after its run folder, not 'checkpoint.pt'."""
    import http.client

    body = json.dumps({"model": MODEL, "prompt": "Tarina", "max_tokens": 4, "temperature": 0, "top_k": 0}).encode()
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    # An iterable body without Content-Length: http.client sends it chunked.
    connection.request("POST", "/v1/completions", body=iter([body[:10], body[10:]]),
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    assert json.loads(answer.read())["usage"]["completion_tokens"] <= 4
    connection.close()
    from tinylang.serve.server import served_name

    assert served_name(run_dir / "checkpoint.pt") == served_name(run_dir) == run_dir.name


def test_a_vanished_non_streaming_client_frees_its_row(server):
    import socket

    body = json.dumps({"model": MODEL, "prompt": "Tarina", "max_tokens": 10**6, "ignore_eos": True}).encode()
    host, port = server.server_address[:2]
    with socket.create_connection((host, port)) as raw:
        raw.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 5
        while not server.served.engine.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.served.engine.active == 1
    deadline = time.monotonic() + 10
    while server.served.engine.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.served.engine.active == 0


def test_stop_cuts_at_the_earliest_match_and_errors_stay_with_their_request(run_dir):
    from tinylang.serve.engine import Engine, Finished, GenerationRequest, _Row

    row = _Row(GenerationRequest("", stop=["b", "ab"]), torch.device("cpu"))
    for byte in b"xab":
        if row.feed(byte):
            break
    events = [e for _, e in list(row.request.sink.queue)]
    assert "".join(e for e in events if isinstance(e, str)) == "x" and events[-1].reason == "stop"

    model, _ = load_model(run_dir)
    engine = Engine(model, max_batch=4).start()
    try:
        good = engine.submit(GenerationRequest("Tarina", max_bytes=30, temperature=0))
        bad = engine.submit(GenerationRequest("Tarina", max_bytes=30, seed=2**70))  # torch refuses the seed
        assert [e for e in bad.events(timeout=10)][-1].reason == "error"
        assert [e for e in good.events(timeout=10)][-1].reason in ("stop", "length")
        slow = engine.submit(GenerationRequest("Tarina", max_bytes=10**6, ignore_eos=True))
        next(slow.events(timeout=10))
    finally:
        engine.close()
    last = list(slow.events(timeout=10))[-1]
    assert isinstance(last, Finished) and last.reason == "error" and "shutting down" in last.error
    with pytest.raises(RuntimeError, match="not running"):
        engine.submit(GenerationRequest("x"))


def test_a_full_queue_refuses_whole_requests_with_503(run_dir):
    """One row generating, one waiting (max_batch 1, max_queue 1): a request for two more rows is
    refused whole, and the queue takes requests again once it drains."""
    server = ModelServer.from_run(run_dir, ServeOptions(port=0, max_batch=1, max_queue=1))
    server.start_in_thread()
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    long = {"model": MODEL, "prompt": "Tarina", "max_tokens": 100_000, "extra_body": {"ignore_eos": True}}
    streams = []
    try:
        streams.append(client.completions.create(stream=True, **long))
        next(iter(streams[0]))  # generating: the one batch slot is taken
        with pytest.raises(openai.InternalServerError, match="busy") as refused:
            client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=5)
        assert refused.value.status_code == 503
        streams.append(client.completions.create(stream=True, **long))  # one row may wait
        with pytest.raises(openai.InternalServerError, match="server is busy"):
            client.completions.create(model=MODEL, prompt="c", max_tokens=5)
        for stream in streams:
            stream.close()
        deadline = time.monotonic() + 30
        while True:  # the vanished streams free their rows
            try:
                assert client.completions.create(model=MODEL, prompt="d", max_tokens=3).choices[0].text is not None
                break
            except openai.InternalServerError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()


def test_null_means_the_default_as_in_openais_api():
    from tinylang.serve.api import ChatRequest, CompletionRequest

    request = CompletionRequest.model_validate({"model": MODEL, "prompt": "Tarina", "temperature": None, "top_p": None,
                                                "n": None, "stream": None, "max_tokens": None})
    assert (request.temperature, request.top_p, request.n, request.stream, request.max_tokens) == (1.0, 1.0, 1, False, None)
    chat = ChatRequest.model_validate({"model": MODEL, "messages": [{"role": "user", "content": "hei"}], "temperature": None})
    assert chat.temperature == 1.0
    with pytest.raises(Exception, match="model"):
        CompletionRequest.model_validate({"model": None, "prompt": "x"})
