/** Sets `key` as the most recently used entry of `map`, dropping the least recently used ones past `max`. */
export function remember<V> (map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key)
  map.set(key, value)
  for (const k of map.keys()) {
    if (map.size <= max) break
    map.delete(k)
  }
}
