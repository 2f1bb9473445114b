"""The cockpit driving a real factory: orchestrator, git worktree, bubblewrap sandbox, SQLite and the SDK over
the scripted model. The agent keys (pause/resume, stop) act on a live agent session, and `t` tails the log
the orchestrator writes for it.
"""

from __future__ import annotations

from cockpit.config import load_factory
from cockpit.domain import Kind, TaskState
from cockpit.factory.commands import add_task
from cockpit.factory.runtime import open_factory
from cockpit.tui import CockpitApp
from cockpit.tui.screens.agent_log import AgentLogScreen
from cockpit.tui.screens.prompt import ConfirmScreen
from cockpit.tui.screens.task import TaskScreen
from factory_kit import write_factory
from tui_kit import HUMAN, screen_text, until


async def test_pause_resume_and_stop_a_running_agent_from_the_task_screen(tmp_path):
    cfg = load_factory(write_factory(tmp_path / "f", scenario_files=("waiting_builder.toml",)))
    async with open_factory(cfg) as f:
        tid = (await add_task(f.store, product="shop", title="Wait for the human", actor=HUMAN)).task_id
        app = CockpitApp(f.store, cfg, orchestrator=f.orchestrator)
        async with app.run_test(size=(120, 36)) as pilot:
            orch = f.orchestrator
            await until(pilot, lambda: any(orch.agent_tasks.get(a) == tid for a in orch.agent_tasks), timeout=60)
            [agent] = [a for a, t in orch.agent_tasks.items() if t == tid]
            # the product's pane shows the agent at work, with what it does now
            pane = app.main_screen.panes["shop"]
            await until(pilot, lambda: any(line.startswith(f"{agent} {tid} ▸ run_command") for line in pane.agent_lines),
                        timeout=60)
            # and on the screen, once the pane has rendered it (a loaded box renders later than the data moves)
            await until(pilot, lambda: f"{agent} {tid} ▸ run_command" in screen_text(app), timeout=30)
            app.main_screen.select_task(tid)
            await pilot.pause()
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, TaskScreen))
            await pilot.press("5")  # the agents tab
            await until(pilot, lambda: f"{agent}  builder  working" in screen_text(app))
            # p pauses (recorded, and the factory starts no new session for it), p again resumes
            await pilot.press("p")
            await until(pilot, lambda: agent in orch.paused_agents)
            await until(pilot, lambda: f"{agent}  builder  paused" in screen_text(app))
            await pilot.press("p")
            await until(pilot, lambda: agent not in orch.paused_agents)
            # t: the log the orchestrator writes for the agent
            await pilot.press("t")
            await until(pilot, lambda: isinstance(app.screen, AgentLogScreen))
            await until(pilot, lambda: "▸ run_command while [ ! -f go ]" in screen_text(app), timeout=30)
            await pilot.press("escape")
            # x stops it now (after a yes): its task blocks for the human
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await until(pilot, lambda: f.store.task(tid).state == TaskState.BLOCKED, timeout=30)
            assert f.store.task(tid).blocked_by == ["stopped"]
            await until(pilot, lambda: "stopped" in screen_text(app))
        paused = await f.store.events(kinds=["agent.paused", "agent.resumed", Kind.AGENT_STOPPED])
        assert [(e.kind, e.actor, e.data["agent"]) for e in paused] == [
            ("agent.paused", HUMAN, agent), ("agent.resumed", HUMAN, agent), (Kind.AGENT_STOPPED, HUMAN, agent)]
