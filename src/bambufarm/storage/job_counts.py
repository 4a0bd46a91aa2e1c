"""How many jobs are in each state: the queue's depth for metrics and dashboards."""

from collections.abc import Mapping
from types import MappingProxyType

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bambufarm.storage.job_tables import JobRow


async def count_jobs_by_state(session: AsyncSession) -> Mapping[str, int]:
    """Job counts by state name; states without jobs are absent (one indexed GROUP BY)."""
    rows = await session.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
    return MappingProxyType({state: int(count) for state, count in rows.all()})
