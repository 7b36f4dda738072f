"""One home for the development and test servers and the process helpers that run them.

All of them are ``LoopbackServer`` subclasses (``base``): an aiohttp app on its own event loop in a
daemon thread, bound to 127.0.0.1 on port 0, or in the foreground of a process of its own that
announces its url (``announced_server`` waits for that line). Which is which:

    user-facing tools (what a user runs)
      rewards.serve_rm           the dev RM server ``make demo`` serves: a real HF reward model over
                                 vLLM/SGLang's wire formats (a product module; started as a process
                                 by ``base.serve_in_subprocess``)
      reward.LengthBiasedRM      the experiment's stand-in writing RM (score = characters / 100);
                                 ``FakeRM`` is its old name
      chat.HFChatServer          a transformers model behind chat completions, for ``evaluation`` on CPU
    test doubles (tests and benchmarks)
      reward.FakeJudge           the judge, deciding by rule, with scripted faults
      chat.ScriptedChatServer    a chat server answering from a script or by rule (expansion, evaluation)
      faulty.FaultyRM, faulty.FaultyJudge
                                 RM (all three wire formats) and judge answering a scripted fault or a
                                 random steady mix (5xx, hangs, malformed, NaN / Infinity): the
                                 non-finite tests and benchmarks/reward_soak.py

    base    LoopbackServer, ServerLog, READY_LINE, announced_server, serve_in_subprocess,
            stop_process, free_port
"""
