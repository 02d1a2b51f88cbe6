// The raw libibverbs symbols (control path only). The data-path verbs ibv_post_send, ibv_post_recv
// and ibv_poll_cq are static inline in verbs.h: they are not exported, and verbs.ts calls them
// through the provider's ops table (see Context).
//
// The library is loaded on first use so that importing this module never fails on a machine
// without libibverbs.so.1; `verbsLibrary()` returns null there and says why.

import { dlopen, FFIType } from "bun:ffi";

const { ptr, i32, u8, u32, u64, void: voidType, cstring } = FFIType;

const definitions = {
  ibv_get_device_list: { args: [ptr], returns: ptr },
  ibv_free_device_list: { args: [ptr], returns: voidType },
  ibv_get_device_name: { args: [ptr], returns: cstring },
  ibv_open_device: { args: [ptr], returns: ptr },
  ibv_close_device: { args: [ptr], returns: i32 },
  ibv_query_device: { args: [ptr, ptr], returns: i32 },
  // The exported symbol takes the older, shorter port attribute struct (verbs.h wraps it in a macro);
  // its fields share offsets with struct ibv_port_attr, and the caller passes a full-size buffer.
  ibv_query_port: { args: [ptr, u8, ptr], returns: i32 },
  ibv_query_gid: { args: [ptr, u8, i32, ptr], returns: i32 },
  _ibv_query_gid_ex: { args: [ptr, u32, u32, ptr, u32, u64], returns: i32 },
  ibv_alloc_pd: { args: [ptr], returns: ptr },
  ibv_dealloc_pd: { args: [ptr], returns: i32 },
  ibv_reg_mr: { args: [ptr, ptr, u64, i32], returns: ptr },
  ibv_dereg_mr: { args: [ptr], returns: i32 },
  ibv_create_cq: { args: [ptr, i32, ptr, ptr, i32], returns: ptr },
  ibv_destroy_cq: { args: [ptr], returns: i32 },
  ibv_create_qp: { args: [ptr, ptr], returns: ptr },
  ibv_modify_qp: { args: [ptr, ptr, i32], returns: i32 },
  ibv_destroy_qp: { args: [ptr], returns: i32 },
  ibv_create_ah: { args: [ptr, ptr], returns: ptr },
  ibv_destroy_ah: { args: [ptr], returns: i32 },
  ibv_wc_status_str: { args: [i32], returns: cstring },
} as const;

type Library = ReturnType<typeof dlopen<typeof definitions>>;
export type VerbsSymbols = Library["symbols"];

let loaded: Library | null = null;
let loadError: string | null = null;

/** The libibverbs symbols, or null when libibverbs.so.1 cannot be loaded (see verbsLibraryMissing). */
export function verbsLibrary(): VerbsSymbols | null {
  if (loaded === null && loadError === null) {
    try {
      loaded = dlopen("libibverbs.so.1", definitions);
    } catch (e) {
      loadError = e instanceof Error ? e.message : String(e);
    }
  }
  return loaded === null ? null : loaded.symbols;
}

/** Why libibverbs.so.1 is unavailable, or null when it loads. */
export function verbsLibraryMissing(): string | null {
  verbsLibrary();
  return loadError === null ? null : `libibverbs.so.1 could not be loaded: ${loadError}`;
}
