"""A customer's protection plan: the guidance steps for their exposures, and their progress."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, literal, select, union_all

from portal import clock
from portal.extensions import db
from portal.models import Customer, Exposure, GuidanceProgress
from portal.models.audit import customer_actor
from portal.services import audit
from portal.services.guidance import CHANGE_PASSWORD, Step, steps_for
from portal.unit_of_work import write_is_the_point


class StepNotInPlan(Exception):
    """That step is not part of this customer's plan."""


@dataclass(frozen=True)
class PlanItem:
    step: Step
    done: bool


@dataclass(frozen=True)
class Plan:
    items: list[PlanItem]

    @property
    def done(self) -> int:
        return sum(item.done for item in self.items)

    @property
    def total(self) -> int:
        return len(self.items)

    def open_steps(self, limit: int | None = None) -> list[Step]:
        steps = [item.step for item in self.items if not item.done]
        return steps[:limit] if limit else steps

    def item(self, step_id: str) -> PlanItem:
        for item in self.items:
            if item.step.id == step_id:
                return item
        raise StepNotInPlan(step_id)


# Built once: making a statement costs more CPU than running it (bound per call, by name).
_EXPOSED_AND_DONE = union_all(
    select(literal("exposed"), Exposure.data_class).where(
        Exposure.customer_id == bindparam("customer_id")
    ),
    select(literal("done"), GuidanceProgress.step_id).where(
        GuidanceProgress.customer_id == bindparam("customer_id")
    ),
)


def with_password_step(customer: Customer, done: set[str]) -> set[str]:
    """`done` (step ids marked done) with the password step when the customer set a new one."""
    if customer.password_changed_at is not None:
        done.add(CHANGE_PASSWORD)  # setting a new password here is that step, done
    return done


def build(keys: set[str], done: set[str], language: str, region: str = "") -> Plan:
    """The plan for these keys where the reader lives ("" unknown: the home country). An exposed
    password's step leads until it is done."""
    items = [PlanItem(step, step.id in done) for step in steps_for(keys, language, region)]
    # CHANGE_PASSWORD is the id of a plan step (guidance), not a password: nothing secret here.
    items.sort(key=lambda item: not (item.step.id == CHANGE_PASSWORD and not item.done))
    return Plan(items)


def for_customer(customer: Customer, language: str) -> Plan:
    """One query, however many incidents and exposures: what was exposed and which steps are
    done, side by side (a UNION ALL of the two)."""
    rows = db.session.execute(_EXPOSED_AND_DONE, {"customer_id": customer.id})
    keys: set[str] = set()
    done: set[str] = set()
    for kind, key in rows:
        (keys if kind == "exposed" else done).add(key)
    return build(keys, with_password_step(customer, done), language, customer.region)


def viewed(customer: Customer) -> None:
    """Note the first time the plan was opened (for the response team's funnel)."""
    if customer.plan_viewed_at is None:
        # Written on the GET of the plan: the first view is the point (the funnel's figure).
        write_is_the_point(Customer.plan_viewed_at)
        customer.plan_viewed_at = clock.now()
        db.session.flush()


def toggle(customer: Customer, step_id: str, language: str) -> Plan:
    """Mark a step of this customer's own plan done, or not done again."""
    plan = for_customer(customer, language)
    item = plan.item(step_id)  # a step outside their plan is refused
    if item.done:
        db.session.execute(
            delete(GuidanceProgress).where(
                GuidanceProgress.customer_id == customer.id, GuidanceProgress.step_id == step_id
            )
        )
    else:
        db.session.add(
            GuidanceProgress(customer_id=customer.id, step_id=step_id, done_at=clock.now())
        )
    audit.record(
        "plan.step_undone" if item.done else "plan.step_done",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"step": step_id},
    )
    db.session.flush()
    return for_customer(customer, language)
